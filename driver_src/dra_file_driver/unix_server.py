"""gRPC servers on Unix domain sockets, as the kubelet expects them.

The kubelet finds plugins by socket files, so a socket left by a crashed
process must be removed before listening again (or the kubelet would keep
dialing a dead endpoint), and a stopping driver removes its sockets, which
makes the kubelet deregister it at once.

The servers are grpc.aio servers on the process's event loop (see
event_loop), with one log line per call (request_log). Servicer methods that
are plain functions run on a small thread pool of the server's own.
"""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from . import event_loop
from .request_log import RequestLog

log = logging.getLogger(__name__)

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class UnixSocketServer:
    def __init__(self, path: Path, *, name: str, max_workers: int) -> None:
        """max_workers bounds the threads for servicer methods that are plain functions."""
        self.path = path
        self.name = name
        self._loop = event_loop.shared()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self.server = self._loop.run(_new_server(self._pool, [RequestLog(name)]))

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_socket(self.path)
        self.server.add_insecure_port(f"unix:{self.path}")
        self._loop.run(self.server.start())
        log.info("gRPC server listening", extra={"server": self.name, "socket": str(self.path)})

    def stop(self, grace: float) -> None:
        """Stop serving (in-flight calls get grace seconds) and remove the socket."""
        self._loop.run(self.server.stop(grace))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.path.unlink(missing_ok=True)
        log.info("gRPC server stopped", extra={"server": self.name})


async def _new_server(
    pool: ThreadPoolExecutor, interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]
) -> grpc.aio.Server:
    # grpc.aio.server() binds to the running loop, so it is made on the loop.
    return grpc.aio.server(migration_thread_pool=pool, interceptors=interceptors)


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
