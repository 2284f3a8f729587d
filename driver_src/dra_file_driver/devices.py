"""The node's devices: plain files named file1..fileN in one host directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__

DEVICE_NAME_PREFIX = "file"
# ResourceSlice validation limits string attribute values to 64 characters;
# the path attribute must fit.
MAX_ATTRIBUTE_STRING = 64


@dataclass(frozen=True)
class FileDevice:
    name: str
    index: int
    path: Path

    def attributes(self, shared: bool) -> dict[str, dict[str, Any]]:
        """ResourceSlice attributes, usable in DeviceClass/claim CEL selectors."""
        return {
            "path": {"string": str(self.path)},
            "index": {"int": self.index},
            "shared": {"bool": shared},
            "driverVersion": {"version": __version__},
        }


def inventory(file_dir: Path, count: int) -> tuple[FileDevice, ...]:
    """The devices this node offers, in publication order."""
    return tuple(
        FileDevice(name=f"{DEVICE_NAME_PREFIX}{i}", index=i, path=file_dir / f"file{i}")
        for i in range(1, count + 1)
    )


def env_var(device_name: str) -> str:
    """Environment variable that tells a consumer where the device's file is."""
    return "DRA_" + device_name.upper().replace("-", "_")
