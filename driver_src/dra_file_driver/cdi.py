"""CDI (Container Device Interface) specs that put a device file into a container.

One spec file per prepared claim, written into the runtime's dynamic CDI
directory and named like the Go CDI cache names transient specs
(``<vendor>-<class>_<claimUID>``), so it is easy to tell whose it is and the
driver can find its own specs after a restart. Device names include the claim
UID so that a CDI ID is never reused for another claim (runtimes may cache
specs; a reused ID could hit a stale entry).

The content is JSON, which every CDI loader accepts, in a ``.json`` file: JSON
needs no YAML library in the image, and the extension tells runtimes how to
parse it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomicfile

CDI_CLASS = "file"
SPEC_SUFFIX = ".json"

# Released CDI spec versions, oldest first; 0.3.0 is the oldest one current
# loaders accept (container-device-interface specs-go/version.go).
_EARLIEST_VERSION = "0.3.0"


@dataclass(frozen=True)
class FileMount:
    """A device file bound into a container at the same path as on the host."""

    device: str
    host_path: str
    env_var: str


def vendor(driver_name: str) -> str:
    # "k8s." keeps the vendor distinct from vendors of device plugins that may
    # use the bare domain (the convention of the DRA example driver).
    return f"k8s.{driver_name}"


def kind(driver_name: str) -> str:
    return f"{vendor(driver_name)}/{CDI_CLASS}"


def device_name(claim_uid: str, device: str) -> str:
    return f"{claim_uid}-{device}"


def qualified_device_id(driver_name: str, claim_uid: str, device: str) -> str:
    """Fully qualified CDI device ID, as returned to the kubelet."""
    return f"{kind(driver_name)}={device_name(claim_uid, device)}"


def spec_file_prefix(driver_name: str) -> str:
    return f"{vendor(driver_name)}-{CDI_CLASS}_"


def spec_file_name(driver_name: str, claim_uid: str) -> str:
    return f"{spec_file_prefix(driver_name)}{claim_uid}{SPEC_SUFFIX}"


def build_spec(driver_name: str, claim_uid: str, mounts: Sequence[FileMount]) -> dict[str, Any]:
    """The CDI spec that exposes each file of a claim to its containers.

    Mount options: "bind" because the source is one regular file (no
    submounts, so "rbind" would add nothing); "ro" because the driver owns
    the content and rewrites it from its checkpoint, so a container must not
    change it; "nosuid"/"nodev" because it is data, never an executable or a
    device. The bind mount pins the file's inode when the container starts,
    and the driver replaces the file by rename, so a container keeps seeing
    the file as it was at its own start. For this demo that is the intent:
    each consumer sees the list that includes its own name.
    """
    devices = [
        {
            "name": device_name(claim_uid, mount.device),
            "containerEdits": {
                "env": [f"{mount.env_var}={mount.host_path}"],
                "mounts": [
                    {
                        "hostPath": mount.host_path,
                        "containerPath": mount.host_path,
                        "options": ["ro", "nosuid", "nodev", "bind"],
                    }
                ],
            },
        }
        for mount in mounts
    ]
    spec: dict[str, Any] = {"kind": kind(driver_name), "devices": devices}
    return {"cdiVersion": minimum_version(spec), **spec}


def minimum_version(spec: Mapping[str, Any]) -> str:
    """Lowest CDI spec version that supports every feature spec uses.

    Runtimes vendor a CDI library that rejects versions newer than it knows,
    so a spec must claim the oldest version its content allows. The rules
    mirror the feature checks of the CDI reference implementation.
    """
    devices: Sequence[Mapping[str, Any]] = spec.get("devices", [])
    edits: list[Mapping[str, Any]] = [spec.get("containerEdits") or {}]
    edits += [device.get("containerEdits") or {} for device in devices]

    if any(e.get("netDevices") for e in edits) or any(
        _uses_intel_rdt_v110(e.get("intelRdt")) for e in edits
    ):
        return "1.1.0"
    if any(e.get("intelRdt") is not None or e.get("additionalGids") for e in edits):
        return "0.7.0"
    _, _, cdi_class = str(spec.get("kind", "")).partition("/")
    if spec.get("annotations") or any(d.get("annotations") for d in devices) or "." in cdi_class:
        return "0.6.0"
    if any(str(d.get("name", ""))[:1].isdigit() for d in devices) or any(
        node.get("hostPath") for e in edits for node in e.get("deviceNodes", [])
    ):
        return "0.5.0"
    if any(mount.get("type") for e in edits for mount in e.get("mounts", [])):
        return "0.4.0"
    return _EARLIEST_VERSION


def _uses_intel_rdt_v110(intel_rdt: Mapping[str, Any] | None) -> bool:
    return intel_rdt is not None and (
        intel_rdt.get("schemata") is not None or bool(intel_rdt.get("enableMonitoring"))
    )


def render(spec: Mapping[str, Any]) -> bytes:
    return (json.dumps(spec, indent=2) + "\n").encode()


class SpecDirectory:
    """This driver's spec files in a CDI directory shared with other drivers."""

    def __init__(self, directory: Path, driver_name: str) -> None:
        self.directory = directory
        self._driver_name = driver_name
        self._prefix = spec_file_prefix(driver_name)

    def path(self, claim_uid: str) -> Path:
        return self.directory / spec_file_name(self._driver_name, claim_uid)

    def write(self, claim_uid: str, mounts: Sequence[FileMount]) -> bool:
        """Write the claim's spec unless it is already current; True if written."""
        spec = build_spec(self._driver_name, claim_uid, mounts)
        # Not durable: specs are rebuilt from the checkpoint at start.
        return atomicfile.write_if_changed(self.path(claim_uid), render(spec), durable=False)

    def remove(self, claim_uid: str) -> bool:
        return atomicfile.remove(self.path(claim_uid), durable=False)

    def claim_uids(self) -> set[str]:
        """UIDs of the claims that have a spec file of this driver."""
        uids = set()
        for entry in self.directory.iterdir():
            name = entry.name
            if name.startswith(self._prefix) and name.endswith(SPEC_SUFFIX):
                uids.add(name[len(self._prefix) : -len(SPEC_SUFFIX)])
        return uids

    def leftover_temp_files(self) -> list[Path]:
        return atomicfile.leftover_temp_files(self.directory, self._prefix)
