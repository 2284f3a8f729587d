"""The device files: one pod name per line.

The driver owns these files. Their content is never edited in place: it is
always derived from the checkpoint (the pod names of every prepared claim
holding the device) and written whole, atomically, by the device state while
it holds the state lock. So a crash at any point leaves a complete old or new
file, and the next start rewrites it from the checkpoint in any case.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import atomicfile
from .devices import DEVICE_NAME_PREFIX
from .prepared import PreparedClaim


def render(pod_names: Iterable[str]) -> bytes:
    """File content for pod_names: each on its own line, first occurrence kept."""
    unique = dict.fromkeys(pod_names)
    return "".join(f"{name}\n" for name in unique).encode()


def write(path: Path, pod_names: Iterable[str]) -> bool:
    """Make path list exactly pod_names; return True if the file changed."""
    # Not durable: device files are rebuilt from the checkpoint at start.
    return atomicfile.write_if_changed(path, render(pod_names), durable=False)


def leftover_temp_files(directory: Path) -> list[Path]:
    return atomicfile.leftover_temp_files(directory, DEVICE_NAME_PREFIX)


class PodIndex:
    """Which pod names each device file must list, kept up to date claim by claim.

    A device file lists the pods of every prepared claim that holds it, in
    the order the claims were prepared. Deriving that from all prepared
    claims on each change would cost O(claims) per prepare; the index is
    updated with the claims a change adds and removes instead, so a change
    costs O(claims holding the files it touches).
    """

    def __init__(self, device_paths: Iterable[str]) -> None:
        self._device_paths = tuple(device_paths)
        # path -> {claim UID: pod names}; dicts keep the order of preparing.
        self._pods: dict[str, dict[str, tuple[str, ...]]] = {}

    def reset(self, claims: Iterable[PreparedClaim]) -> None:
        self._pods = {path: {} for path in self._device_paths}
        for claim in claims:
            self.add(claim)

    def add(self, claim: PreparedClaim) -> None:
        for path in dict.fromkeys(d.path for d in claim.devices):
            self._pods.setdefault(path, {})[claim.uid] = claim.pods

    def remove(self, claim: PreparedClaim) -> None:
        for path in dict.fromkeys(d.path for d in claim.devices):
            holders = self._pods.get(path)
            if holders is not None:
                holders.pop(claim.uid, None)
                if not holders and path not in self._device_paths:
                    del self._pods[path]  # a file of an old configuration

    def paths(self) -> list[str]:
        """Every file the driver writes: its devices' and any a prepared claim holds."""
        return list(self._pods)

    def pods(self, path: str) -> list[str]:
        return [pod for pods in self._pods.get(path, {}).values() for pod in pods]
