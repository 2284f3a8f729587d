"""File names of the two sockets of one driver instance.

Without a pod UID there is one instance per node and the names are fixed:
`<driver>-reg.sock` in the kubelet's registry directory and `dra.sock` in the
plugin directory. For a seamless rolling update (a DaemonSet with maxSurge 1)
the old and the new driver pod run side by side on a node, so each instance
names its sockets after its pod UID: `<driver>-<uid>-reg.sock` and
`dra-<uid>.sock`. With fixed names the new pod would unlink and re-create the
old pod's socket, and the kubelet, seeing the removal, would deregister the
plugin; with per-instance names each pod only ever creates and removes its
own sockets, and the kubelet registers both and uses the newer one.

A Unix socket path has at most 107 bytes, and a long driver name or
directory plus a 36-character UID can exceed that. The names then fall back,
as the upstream helper does, to a hash of the UID, and for the registration
socket finally to a hash of driver name and UID without the driver name. The
hashes are deterministic, so a restarted container of the same pod finds
(and replaces) its own stale sockets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .unix_server import MAX_SOCKET_PATH

DRA_SOCKET_NAME = "dra.sock"
_REGISTRATION_SUFFIX = "-reg.sock"


def registration_socket(registry_dir: Path, driver_name: str, pod_uid: str | None) -> Path:
    """Path of the registration socket that the kubelet's plugin watcher finds."""
    if pod_uid is None:
        return registry_dir / f"{driver_name}{_REGISTRATION_SUFFIX}"
    return _first_that_fits(
        registry_dir,
        f"{driver_name}-{pod_uid}{_REGISTRATION_SUFFIX}",
        f"{driver_name}-{_digest(pod_uid, 12)}{_REGISTRATION_SUFFIX}",
        # The driver name no longer fits, so it goes into the hash: two
        # drivers in one registry directory must not share a name.
        f"dra-{_digest(driver_name + chr(0) + pod_uid, 16)}{_REGISTRATION_SUFFIX}",
    )


def dra_socket(plugin_dir: Path, pod_uid: str | None) -> Path:
    """Path of the DRA service socket (the endpoint GetInfo reports)."""
    if pod_uid is None:
        return plugin_dir / DRA_SOCKET_NAME
    # The plugin directory is the driver's own, so the UID alone is unique.
    return _first_that_fits(plugin_dir, f"dra-{pod_uid}.sock", f"dra-{_digest(pod_uid, 16)}.sock")


def too_long(path: Path) -> bool:
    return len(str(path).encode()) > MAX_SOCKET_PATH


def _first_that_fits(directory: Path, *names: str) -> Path:
    """The first name whose path fits a socket address; else the last (config reports it)."""
    candidates = [directory / name for name in names]
    return next((path for path in candidates if not too_long(path)), candidates[-1])


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
