"""Publishing this node's devices as resource.k8s.io/v1 ResourceSlices.

The scheduler allocates only devices it sees in ResourceSlices, and the
kubelet deletes every slice of its node when it starts (and a driver's slices
30 s after the driver deregisters). So publishing is not a one-off create: a
controller thread lists and watches this driver's slices of this node and
re-creates or repairs them whenever they differ from what this node offers.

One pool per node, named after the node (the pool name is what allocation
results carry, so prepare can tell this node's devices from others'). A pool
holds at most 128 devices per slice; larger inventories are split into
several slices that share the pool's generation and resourceSliceCount. The
generation goes up whenever the published content changes, so consumers
never mix slices of two versions of the pool.

The controller keeps the slices it last saw (listed, written, or learned
from watch events) and relists only when they drift from what it wants: the
events that its own writes cause change nothing and cost no relist.

The thread must never take the process down: the gRPC services keep serving
prepared claims while the API server is away, and the thread retries with a
backoff capped at a few seconds, so that slices missing when the API server
returns (the kubelet deletes a node's slices when it starts) are back soon.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from . import kube
from .devices import FileDevice
from .metrics import Metrics

log = logging.getLogger(__name__)

MAX_DEVICES_PER_SLICE = 128
# Relist at least this often even if no event arrives (guards against
# missed events).
WATCH_TIMEOUT_SECONDS = 120
INITIAL_BACKOFF = 0.5
# With jitter at most 6 s between attempts: a slice that is missing when the
# API server comes back is re-created well within 10 s. One list per node
# every few seconds is a light load for an API server that is recovering.
MAX_BACKOFF = 5.0
SLICES = "resourceslices"


def device_entry(device: FileDevice, shared: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": device.name, "attributes": device.attributes(shared)}
    if shared:
        # Lets the scheduler hand the same device to several claims.
        entry["allowMultipleAllocations"] = True
    return entry


def build_slice_specs(
    driver_name: str,
    node_name: str,
    devices: Sequence[FileDevice],
    shared: bool,
    generation: int,
) -> list[dict[str, Any]]:
    """Specs of the slices of this node's pool."""
    chunks = [
        devices[i : i + MAX_DEVICES_PER_SLICE]
        for i in range(0, len(devices), MAX_DEVICES_PER_SLICE)
    ]
    return [
        {
            "driver": driver_name,
            "nodeName": node_name,
            "pool": {
                "name": node_name,
                "generation": generation,
                "resourceSliceCount": len(chunks),
            },
            "devices": [device_entry(d, shared) for d in chunk],
        }
        for chunk in chunks
    ]


def node_owner_reference(node_name: str, node_uid: str) -> dict[str, Any]:
    """Makes the garbage collector delete the slices together with the Node."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "name": node_name,
        "uid": node_uid,
        "controller": True,
    }


def new_slice(
    driver_name: str, node_name: str, node_uid: str, spec: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": kube.RESOURCE_API_VERSION,
        "kind": "ResourceSlice",
        "metadata": {
            # The API server shortens long prefixes to fit the name limit.
            "generateName": f"{node_name}-{driver_name}-",
            "ownerReferences": [node_owner_reference(node_name, node_uid)],
        },
        "spec": dict(spec),
    }


def _content_key(spec: Mapping[str, Any]) -> str:
    """Canonical form of a slice spec without its generation, for comparisons."""
    pool = dict(spec.get("pool") or {})
    pool.pop("generation", None)
    return json.dumps({**spec, "pool": pool}, sort_keys=True)


class Backoff:
    """Delays between failed attempts: doubling up to MAX_BACKOFF, with +-20 % jitter.

    The jitter keeps the nodes of a cluster from retrying in step after an
    outage of the API server.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._next = INITIAL_BACKOFF

    def next_delay(self) -> float:
        delay = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._next * 2, MAX_BACKOFF)
        return delay

    def reset(self) -> None:
        self._next = INITIAL_BACKOFF


class SliceWatch(Protocol):
    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class SliceApi(Protocol):
    """The API calls the publisher makes (ApiSlices; a fake in the unit tests)."""

    def node_uid(self, node_name: str) -> str: ...
    def list(self, field_selector: str) -> dict[str, Any]: ...
    def watch(self, field_selector: str, resource_version: str) -> SliceWatch: ...
    def create(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete(self, name: str) -> None: ...


class ApiSlices:
    """SliceApi on the real API server."""

    def __init__(self, api: kube.Api) -> None:
        self._api = api

    def node_uid(self, node_name: str) -> str:
        node = self._api.request(
            "GET", kube.object_path("v1", "nodes", node_name), timeout=kube.REQUEST_TIMEOUT
        )
        uid = (node.get("metadata") or {}).get("uid")
        if not isinstance(uid, str) or not uid:
            raise RuntimeError(f"node {node_name} has no UID")
        return uid

    def list(self, field_selector: str) -> dict[str, Any]:
        return self._api.request(
            "GET",
            kube.object_path(kube.RESOURCE_API_VERSION, SLICES),
            query=[("fieldSelector", field_selector)],
            timeout=kube.REQUEST_TIMEOUT,
        )

    def watch(self, field_selector: str, resource_version: str) -> kube.Watch:
        return self._api.watch(
            kube.object_path(kube.RESOURCE_API_VERSION, SLICES),
            query=[
                ("fieldSelector", field_selector),
                ("resourceVersion", resource_version),
                ("timeoutSeconds", WATCH_TIMEOUT_SECONDS),
            ],
            # The server ends the watch after timeoutSeconds; the read
            # timeout only catches a connection that died silently.
            timeout=(kube.REQUEST_TIMEOUT[0], WATCH_TIMEOUT_SECONDS + 30),
        )

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._api.request(
            "POST",
            kube.object_path(kube.RESOURCE_API_VERSION, SLICES),
            body=body,
            timeout=kube.REQUEST_TIMEOUT,
        )

    def replace(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._api.request(
            "PUT",
            kube.object_path(kube.RESOURCE_API_VERSION, SLICES, name),
            body=body,
            timeout=kube.REQUEST_TIMEOUT,
        )

    def delete(self, name: str) -> None:
        self._api.request(
            "DELETE",
            kube.object_path(kube.RESOURCE_API_VERSION, SLICES, name),
            timeout=kube.REQUEST_TIMEOUT,
        )


class SlicePublisher:
    def __init__(
        self,
        api: SliceApi,
        *,
        driver_name: str,
        node_name: str,
        devices: Sequence[FileDevice],
        shared: bool,
        metrics: Metrics,
    ) -> None:
        self._api = api
        self._driver_name = driver_name
        self._node_name = node_name
        self._devices = tuple(devices)
        self._shared = shared
        self._metrics = metrics
        self._field_selector = f"spec.nodeName={node_name},spec.driver={driver_name}"
        # What this node offers, with a placeholder generation (comparisons
        # ignore it).
        self._desired = build_slice_specs(driver_name, node_name, self._devices, shared, 0)
        self._stop = threading.Event()
        self._watch: SliceWatch | None = None
        self._thread = threading.Thread(target=self._run, name="slice-publisher", daemon=True)
        # What the API server stored for a spec we wrote, when it differs
        # (e.g. it drops fields that a disabled feature gate covers). Without
        # this, such a difference would look like drift forever and every
        # sync would rewrite the slices.
        self._stored_form: dict[str, str] = {}
        self._last_generation = -1
        # This driver's slices of this node as last seen, by name, and the
        # UID of the node that must own them (both set by sync()).
        self._seen: dict[str, dict[str, Any]] = {}
        self._node_uid = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        current = self._watch
        if current is not None:
            current.close()  # unblocks a waiting watch
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- controller loop ---------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                resource_version = self.sync()
                self._watch_until_drift(resource_version)
                backoff.reset()
            except Exception as exc:  # the loop must survive anything
                if self._stop.is_set():
                    break
                if kube.status_of(exc) == 410:  # watch expired: just relist
                    continue
                delay = backoff.next_delay()
                log.warning(
                    "publishing ResourceSlices failed; retrying",
                    extra={"error": kube.describe_error(exc), "retry_in_seconds": round(delay, 2)},
                )
                self._stop.wait(delay)
        log.info("ResourceSlice publisher stopped")

    def _watch_until_drift(self, resource_version: str) -> None:
        """Follow our slices' events until they drift from the inventory.

        Returns also when the watch ends (server timeout, lost connection)
        or on stop(); the caller then relists.
        """
        if self._stop.is_set():
            return
        w = self._api.watch(self._field_selector, resource_version)
        self._watch = w
        try:
            if self._stop.is_set():  # stop() came before self._watch was set
                return
            for event in w:
                kind, obj = event.get("type"), event.get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if kind not in ("ADDED", "MODIFIED", "DELETED") or not name:
                    continue
                if kind == "DELETED":
                    self._seen.pop(name, None)
                else:
                    self._seen[name] = obj
                if not self._up_to_date(list(self._seen.values()), self._desired, self._node_uid):
                    log.debug("ResourceSlice changed", extra={"event": kind, "slice": name})
                    return
        finally:
            self._watch = None
            w.close()

    # -- one reconciliation pass -------------------------------------------

    def sync(self) -> str:
        """Make the published slices match the inventory; return the list's resourceVersion."""
        node_uid = self._api.node_uid(self._node_name)
        listing = self._api.list(self._field_selector)
        existing: list[dict[str, Any]] = sorted(
            listing.get("items") or [], key=lambda s: s["metadata"]["name"]
        )
        resource_version = str(listing["metadata"]["resourceVersion"])
        self._node_uid = node_uid
        self._seen = {s["metadata"]["name"]: s for s in existing}
        if self._up_to_date(existing, self._desired, node_uid):
            self._metrics.published_devices.set(len(self._devices))
            return resource_version

        # Never reuse a generation, even after all slices were deleted: a
        # consumer whose cache still holds a deleted slice must not take it
        # for part of the new pool.
        generation = 1 + max([self._last_generation, *(_generation(s) for s in existing)])
        self._last_generation = generation
        desired = build_slice_specs(
            self._driver_name, self._node_name, self._devices, self._shared, generation
        )
        # Slices of another pool name (e.g. from an older driver version)
        # cannot be updated into ours: the pool name is immutable.
        reusable = [s for s in existing if s["spec"].get("pool", {}).get("name") == self._node_name]
        obsolete = [s for s in existing if s not in reusable]
        for spec in desired:
            if reusable:
                stored = self._replace(reusable.pop(0), spec, node_uid)
            else:
                stored = self._create(spec, node_uid)
            self._seen[stored["metadata"]["name"]] = stored
            self._remember_stored_form(spec, stored)
        for leftover in [*reusable, *obsolete]:
            self._delete(leftover)
            self._seen.pop(leftover["metadata"]["name"], None)
        log.info(
            "published ResourceSlices",
            extra={
                "pool": self._node_name,
                "generation": generation,
                "slices": len(desired),
                "devices": len(self._devices),
            },
        )
        self._metrics.published_devices.set(len(self._devices))
        return resource_version

    def _up_to_date(
        self,
        existing: Sequence[Mapping[str, Any]],
        desired: Sequence[Mapping[str, Any]],
        node_uid: str,
    ) -> bool:
        if len(existing) != len(desired):
            return False
        if len({_generation(s) for s in existing}) > 1:
            return False
        owner = node_owner_reference(self._node_name, node_uid)
        if any(owner not in (s["metadata"].get("ownerReferences") or []) for s in existing):
            return False
        wanted = sorted(self._stored_form.get(k, k) for k in map(_content_key, desired))
        return sorted(_content_key(s["spec"]) for s in existing) == wanted

    def _remember_stored_form(self, spec: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
        sent, kept = _content_key(spec), _content_key(stored["spec"])
        if sent != kept and self._stored_form.get(sent) != kept:
            log.warning(
                "the API server stored a ResourceSlice spec that differs from the one sent "
                "(a field may be disabled by a feature gate, e.g. DRAConsumableCapacity "
                "for allowMultipleAllocations)",
                extra={"sent": sent, "stored": kept},
            )
        self._stored_form[sent] = kept

    def _create(self, spec: Mapping[str, Any], node_uid: str) -> dict[str, Any]:
        created = self._api.create(new_slice(self._driver_name, self._node_name, node_uid, spec))
        log.info("created ResourceSlice", extra={"slice": created["metadata"]["name"]})
        return created

    def _replace(
        self, current: Mapping[str, Any], spec: Mapping[str, Any], node_uid: str
    ) -> dict[str, Any]:
        metadata = dict(current["metadata"])
        owners = [o for o in metadata.get("ownerReferences") or [] if o.get("kind") != "Node"]
        metadata["ownerReferences"] = [*owners, node_owner_reference(self._node_name, node_uid)]
        # resourceVersion stays in metadata: a concurrent change makes this
        # fail with 409 and the next pass starts from a fresh list.
        body = {**current, "metadata": metadata, "spec": dict(spec)}
        replaced = self._api.replace(metadata["name"], body)
        log.info("updated ResourceSlice", extra={"slice": metadata["name"]})
        return replaced

    def _delete(self, obsolete: Mapping[str, Any]) -> None:
        name = obsolete["metadata"]["name"]
        try:
            self._api.delete(name)
        except kube.ApiError as exc:
            if exc.status != 404:
                raise
        log.info("deleted ResourceSlice", extra={"slice": name})


def _generation(slice_obj: Mapping[str, Any]) -> int:
    return int(slice_obj["spec"].get("pool", {}).get("generation", 0))
