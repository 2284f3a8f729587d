"""A fake of the API server's ResourceSlice endpoints, for the publisher's unit tests.

The publisher is tested against the real API server in test_cluster_publish;
this fake exists for what the real one cannot show cheaply: how many lists and
writes each pass makes, and what a planted mistake in the comparison logic
would let through. It keeps the API server's rules that the publisher relies
on: names from generateName, a resourceVersion that grows with every write,
409 on a replace with a stale resourceVersion, 404 on a missing object, field
selectors on spec.nodeName and spec.driver, and watches that replay every
event after the resourceVersion they start from.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dra_file_driver import kube

Event = dict[str, Any]


class FakeSliceApi:
    def __init__(self, node_uids: Mapping[str, str]) -> None:
        self.node_uids = dict(node_uids)
        self.slices: dict[str, dict[str, Any]] = {}
        # Every call, as (method, name or ""), in order.
        self.calls: list[tuple[str, str]] = []
        # Applied to each stored spec, as an API server with a disabled
        # feature gate drops that gate's fields.
        self.store_spec: Callable[[dict[str, Any]], dict[str, Any]] = lambda spec: spec
        self.down = False  # True: every call fails as if the server were gone
        self._events: list[tuple[int, Event]] = []
        self._version = itertools.count(100)
        self._names = itertools.count(1)
        self._changed = threading.Condition()
        self._watches: list[FakeWatch] = []
        self.resource_version = next(self._version)

    # -- what the publisher calls ------------------------------------------

    def node_uid(self, node_name: str) -> str:
        self._call("node_uid", node_name)
        if node_name not in self.node_uids:
            raise kube.ApiError(404, "Not Found")
        return self.node_uids[node_name]

    def list(self, field_selector: str) -> dict[str, Any]:
        self._call("list")
        with self._changed:
            matches = _selector(field_selector)
            return {
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": [copy.deepcopy(s) for s in self.slices.values() if matches(s)],
            }

    def watch(self, field_selector: str, resource_version: str) -> FakeWatch:
        self._call("watch")
        w = FakeWatch(self, _selector(field_selector), int(resource_version))
        self._watches.append(w)
        return w

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("create")
        obj = copy.deepcopy(dict(body))
        meta = obj["metadata"]
        if "name" in meta or not meta.get("generateName"):
            raise kube.ApiError(422, "Invalid", "the publisher always uses generateName")
        meta["name"] = f"{meta.pop('generateName')}{next(self._names):05d}"
        meta["uid"] = f"uid-{meta['name']}"
        return self._store("ADDED", obj)

    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._call("replace", name)
        current = self.slices.get(name)
        if current is None:
            raise kube.ApiError(404, "Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise kube.ApiError(409, "Conflict")
        return self._store("MODIFIED", copy.deepcopy(dict(body)))

    def delete(self, name: str) -> None:
        self._call("delete", name)
        self.remove(name)

    # -- what tests do behind the publisher's back -------------------------

    def remove(self, name: str) -> None:
        """Delete a slice (as the kubelet or an admin would)."""
        with self._changed:
            if name not in self.slices:
                raise kube.ApiError(404, "Not Found")
            obj = self.slices.pop(name)
            self.resource_version = next(self._version)
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self._record("DELETED", obj)

    def change(self, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
        """Modify a stored slice in place (as another client's update would)."""
        with self._changed:
            obj = copy.deepcopy(self.slices[name])
            edit(obj)
            self.resource_version = next(self._version)
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self.slices[name] = obj
            self._record("MODIFIED", obj)

    def add(self, obj: Mapping[str, Any]) -> None:
        """Store a slice written by someone else (e.g. an older driver version)."""
        with self._changed:
            stored = copy.deepcopy(dict(obj))
            self.resource_version = next(self._version)
            stored["metadata"]["resourceVersion"] = str(self.resource_version)
            self.slices[stored["metadata"]["name"]] = stored
            self._record("ADDED", stored)

    def outage(self, down: bool) -> None:
        """Start (True) or end (False) an outage: calls fail, open watches end."""
        with self._changed:
            self.down = down
            self._changed.notify_all()

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def writes(self) -> builtins.list[tuple[str, str]]:  # "list" is a method here
        return [c for c in self.calls if c[0] in ("create", "replace", "delete")]

    def idle(self) -> bool:
        """True when a watch is open and has handed out every event (the publisher waits)."""
        with self._changed:
            return any(w.waiting for w in self._watches)

    def end_watches(self) -> None:
        """End every open watch, as the server does at timeoutSeconds."""
        with self._changed:
            for w in self._watches:
                w.ended = True
            self._changed.notify_all()

    # -- internals ---------------------------------------------------------

    def _call(self, method: str, name: str = "") -> None:
        self.calls.append((method, name))
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")

    def _store(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            obj["spec"] = self.store_spec(obj["spec"])
            self.resource_version = next(self._version)
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            self.slices[obj["metadata"]["name"]] = obj
            self._record(kind, obj)
            return copy.deepcopy(obj)

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        self._events.append((self.resource_version, {"type": kind, "object": copy.deepcopy(obj)}))
        self._changed.notify_all()


class FakeWatch:
    def __init__(
        self, api: FakeSliceApi, matches: Callable[[Mapping[str, Any]], bool], since: int
    ) -> None:
        self._api = api
        self._matches = matches
        self._since = since
        self.ended = False
        self.waiting = False

    def __iter__(self) -> Iterator[Event]:
        api = self._api
        delivered = 0  # index into api._events
        while True:
            with api._changed:
                while True:
                    if self.ended or api.down:
                        self.waiting = False
                        return
                    pending = [
                        e
                        for version, e in api._events[delivered:]
                        if version > self._since and self._matches(e["object"])
                    ]
                    delivered = len(api._events)
                    if pending:
                        self.waiting = False
                        break
                    self.waiting = True
                    api._changed.wait()
            yield from (copy.deepcopy(e) for e in pending)

    def close(self) -> None:
        with self._api._changed:
            self.ended = True
            self._api._changed.notify_all()


def _selector(field_selector: str) -> Callable[[Mapping[str, Any]], bool]:
    wanted = dict(term.split("=", 1) for term in field_selector.split(","))
    fields = {"spec.nodeName": "nodeName", "spec.driver": "driver"}

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(obj["spec"].get(fields[k]) == v for k, v in wanted.items())

    return matches
