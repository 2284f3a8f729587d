"""gRPC servers on Unix domain sockets, as the kubelet expects them.

The kubelet finds plugins by socket files, so a socket left by a crashed
process must be removed before listening again (or the kubelet would keep
dialing a dead endpoint), and a stopping driver removes its sockets, which
makes the kubelet deregister it at once.
"""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class UnixSocketServer:
    def __init__(self, path: Path, *, name: str, max_workers: int) -> None:
        self.path = path
        self.name = name
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        )

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_socket(self.path)
        self.server.add_insecure_port(f"unix:{self.path}")
        self.server.start()
        log.info("gRPC server listening", extra={"server": self.name, "socket": str(self.path)})

    def stop(self, grace: float) -> None:
        """Stop serving (in-flight calls get grace seconds) and remove the socket."""
        self.server.stop(grace).wait()
        self.path.unlink(missing_ok=True)
        log.info("gRPC server stopped", extra={"server": self.name})


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by an earlier process; refuse to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; not removing it")
    log.info("removing stale socket", extra={"socket": str(path)})
    path.unlink()
