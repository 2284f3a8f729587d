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
