"""The asyncio event loop that every gRPC server of the driver runs on.

The servers are grpc.aio servers: a request is received on the event loop,
so a call whose request never finishes arriving costs a coroutine, not a
worker thread (the threaded server reads each request on a pool thread and
could be starved by such calls). Blocking work goes to thread pools
explicitly (see dra_service).

There is one loop per process, in a daemon thread started on first use:
grpc.aio ties its completion queue to one loop, so servers and channels of
several drivers in one process (the tests run many) must share it. The rest
of the driver is threaded code; it calls into the loop with run().
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run coroutine on the loop and return its result (call from any other thread)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("EventLoopThread.run() called on the loop's own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


_shared: EventLoopThread | None = None
_shared_lock = threading.Lock()


def shared() -> EventLoopThread:
    """The process's gRPC event loop, started on first use."""
    global _shared  # noqa: PLW0603 - one loop per process, see the module docstring
    with _shared_lock:
        if _shared is None:
            _shared = EventLoopThread("grpc-loop")
        return _shared
