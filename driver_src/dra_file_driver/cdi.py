"""CDI (Container Device Interface) specs that put a device file into a container.

One spec file per prepared claim, written into the runtime's dynamic CDI
directory and named like the Go CDI cache names transient specs
(``<vendor>-<class>_<claimUID>``), so it is easy to tell whose it is and the
driver can find its own specs after a restart. Device names include the claim
UID so that a CDI ID is never reused for another claim (runtimes may cache
specs; a reused ID could hit a stale entry).

The CDI IDs the kubelet gets (qualified_device_id) are built here, from the
same device names as the specs, so an ID always names a device of its
claim's spec. A spec holds only what the driver writes: env and one read-only
bind mount per device, and the oldest spec version that allows it.

The content is JSON, which every CDI loader accepts, in a ``.json`` file: JSON
needs no YAML library in the image, and the extension tells runtimes how to
parse it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import atomicfile
from .devices import env_var
from .prepared import PreparedClaim

CDI_CLASS = "file"
SPEC_SUFFIX = ".json"

# The oldest CDI spec version that allows what this driver writes (env,
# mounts with options: 0.3.0, the oldest current loaders accept) and the one
# that first allows a device name starting with a digit, as a claim UID may
# (container-device-interface specs-go/version.go). Runtimes reject versions
# newer than the CDI library they vendor, so a spec claims the older one
# whenever its names allow it.
_BASE_VERSION = "0.3.0"
_DIGIT_NAME_VERSION = "0.5.0"


def vendor(driver_name: str) -> str:
    # "k8s." keeps the vendor distinct from vendors of device plugins that may
    # use the bare domain (the convention of the DRA example driver).
    return f"k8s.{driver_name}"


def kind(driver_name: str) -> str:
    return f"{vendor(driver_name)}/{CDI_CLASS}"


def device_name(claim_uid: str, device: str) -> str:
    return f"{claim_uid}-{device}"


def qualified_device_id(driver_name: str, claim_uid: str, device: str) -> str:
    """Fully qualified CDI device ID, as returned to the kubelet: names a device of the spec."""
    return f"{kind(driver_name)}={device_name(claim_uid, device)}"


def spec_file_prefix(driver_name: str) -> str:
    return f"{vendor(driver_name)}-{CDI_CLASS}_"


def spec_file_name(driver_name: str, claim_uid: str) -> str:
    return f"{spec_file_prefix(driver_name)}{claim_uid}{SPEC_SUFFIX}"


def build_spec(driver_name: str, claim: PreparedClaim) -> dict[str, Any]:
    """The CDI spec that exposes each device file of a claim to its containers.

    One CDI device per distinct device of the claim (a claim may hold one
    device for several requests). Mount options: "bind" because the source
    is one regular file (no submounts, so "rbind" would add nothing); "ro"
    because the driver owns the content and rewrites it from its checkpoint,
    so a container must not change it; "nosuid"/"nodev" because it is data,
    never an executable or a device. The bind mount pins the file's inode
    when the container starts, and the driver replaces the file by rename,
    so a container keeps seeing the file as it was at its own start. For
    this demo that is the intent: each consumer sees the list that includes
    its own name.
    """
    files = {d.device: d.path for d in claim.devices}
    devices = [
        {
            "name": device_name(claim.uid, device),
            "containerEdits": {
                "env": [f"{env_var(device)}={path}"],
                "mounts": [
                    {
                        "hostPath": path,
                        "containerPath": path,
                        "options": ["ro", "nosuid", "nodev", "bind"],
                    }
                ],
            },
        }
        for device, path in files.items()
    ]
    digit_first = any(str(d["name"])[:1].isdigit() for d in devices)
    return {
        "cdiVersion": _DIGIT_NAME_VERSION if digit_first else _BASE_VERSION,
        "kind": kind(driver_name),
        "devices": devices,
    }


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

    def write(self, claim: PreparedClaim) -> bool:
        """Write the claim's spec unless it is already current; True if written."""
        spec = build_spec(self._driver_name, claim)
        # Not durable: specs are rebuilt from the checkpoint at start.
        return atomicfile.write_if_changed(self.path(claim.uid), render(spec), durable=False)

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
