"""A watch on one node's ResourceSlices of the driver, timestamped.

The kubelet deletes its node's slices when it starts and the driver
re-creates them: a deletion and a creation that can follow each other within
milliseconds. Polling could miss the deletion; a watch started before the
kubelet is killed sees every event, each stamped with time.monotonic() when
it arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kubernetes import watch

from .kube_api import RESOURCE_GROUP, RESOURCE_VERSION, KubeApi

# Seconds of one watch request; the thread notices a stop request between two.
WATCH_REQUEST_SECONDS = 5


@dataclass(frozen=True)
class SliceEvent:
    at: float  # time.monotonic() when the event arrived
    type: str  # ADDED, MODIFIED or DELETED
    name: str
    uid: str


class SliceWatch:
    """Records the slice events of node for driver from __enter__ to __exit__."""

    def __init__(self, api: KubeApi, driver: str, node: str) -> None:
        self._api = api
        self._selector = f"spec.nodeName={node},spec.driver={driver}"
        self._events: list[SliceEvent] = []
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slice-watch-{node}", daemon=True)
        self._resource_version = ""
        # UIDs of the node's slices when the watch started.
        self.initial_uids: frozenset[str] = frozenset()

    def __enter__(self) -> SliceWatch:
        listing = self._api.slices(self._selector)
        self._resource_version = listing["metadata"]["resourceVersion"]
        self.initial_uids = frozenset(s["metadata"]["uid"] for s in listing["items"])
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(WATCH_REQUEST_SECONDS * 3)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for event in watch.Watch().stream(
                    self._api.custom.list_cluster_custom_object,
                    RESOURCE_GROUP,
                    RESOURCE_VERSION,
                    "resourceslices",
                    field_selector=self._selector,
                    resource_version=self._resource_version,
                    timeout_seconds=WATCH_REQUEST_SECONDS,
                ):
                    self._record(event)
        except BaseException as error:  # reported by wait_for, in the test's thread
            with self._changed:
                self._error = error
                self._changed.notify_all()

    def _record(self, event: dict[str, Any]) -> None:
        obj = event["raw_object"]
        if event["type"] == "ERROR":
            raise RuntimeError(f"watch of slices {self._selector} failed: {obj}")
        metadata = obj["metadata"]
        self._resource_version = metadata["resourceVersion"]
        if event["type"] == "BOOKMARK":
            return
        recorded = SliceEvent(time.monotonic(), event["type"], metadata["name"], metadata["uid"])
        with self._changed:
            self._events.append(recorded)
            self._changed.notify_all()

    def events(self) -> list[SliceEvent]:
        with self._changed:
            return list(self._events)

    def wait_for(
        self, match: Callable[[SliceEvent], bool], timeout: float, what: str
    ) -> SliceEvent:
        """The first recorded event that matches; waits up to timeout seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((e for e in self._events if match(e)), None)
                if found is not None:
                    return found
                if self._error is not None:
                    raise AssertionError(f"watch of slices {self._selector}: {self._error!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{what}: not seen within {timeout:.0f} s; slice events of "
                        f"{self._selector}: {self._events}"
                    )
                self._changed.wait(remaining)
