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

The thread must never take the process down: the gRPC services keep serving
prepared claims while the API server is away, and the thread retries with
exponential backoff until it is back.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from kubernetes import client, watch

from . import kube
from .devices import FileDevice
from .metrics import Metrics

log = logging.getLogger(__name__)

MAX_DEVICES_PER_SLICE = 128
PLURAL = "resourceslices"
# Relist at least this often even if no event arrives (guards against
# missed events).
WATCH_TIMEOUT_SECONDS = 120
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0


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


class SlicePublisher:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        driver_name: str,
        node_name: str,
        devices: Sequence[FileDevice],
        shared: bool,
        metrics: Metrics,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._driver_name = driver_name
        self._node_name = node_name
        self._devices = tuple(devices)
        self._shared = shared
        self._metrics = metrics
        self._field_selector = f"spec.nodeName={node_name},spec.driver={driver_name}"
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="slice-publisher", daemon=True)
        # What the API server stored for a spec we wrote, when it differs
        # (e.g. it drops fields that a disabled feature gate covers). Without
        # this, such a difference would look like drift forever and every
        # sync would rewrite the slices.
        self._stored_form: dict[str, str] = {}
        self._last_generation = -1

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        current = self._watch
        if current is not None:
            current.stop()  # unblocks a waiting watch
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- controller loop ---------------------------------------------------

    def _run(self) -> None:
        backoff = INITIAL_BACKOFF
        while not self._stop.is_set():
            try:
                resource_version = self.sync()
                self._watch_until_change(resource_version)
                backoff = INITIAL_BACKOFF
            except Exception as exc:  # the loop must survive anything
                if self._stop.is_set():
                    break
                if kube.status_of(exc) == 410:  # watch expired: just relist
                    continue
                delay = backoff * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                log.warning(
                    "publishing ResourceSlices failed; retrying",
                    extra={"error": kube.describe_error(exc), "retry_in_seconds": round(delay, 2)},
                )
                self._stop.wait(delay)
                backoff = min(backoff * 2, MAX_BACKOFF)
        log.info("ResourceSlice publisher stopped")

    def _watch_until_change(self, resource_version: str) -> None:
        """Block until one of our slices changes, the watch times out, or stop()."""
        w = watch.Watch()
        self._watch = w
        try:
            if self._stop.is_set():
                return
            for event in w.stream(
                self._objects.list_cluster_custom_object,
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                PLURAL,
                field_selector=self._field_selector,
                resource_version=resource_version,
                timeout_seconds=WATCH_TIMEOUT_SECONDS,
                deserialize=False,
                _request_timeout=(kube.REQUEST_TIMEOUT[0], WATCH_TIMEOUT_SECONDS + 30),
            ):
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    log.debug(
                        "ResourceSlice event",
                        extra={
                            "event": event["type"],
                            "slice": event["object"]["metadata"].get("name"),
                        },
                    )
                    return
        finally:
            self._watch = None

    # -- one reconciliation pass -------------------------------------------

    def sync(self) -> str:
        """Make the published slices match the inventory; return the list's resourceVersion."""
        node_uid = self._node_uid()
        listing = cast(
            dict[str, Any],
            self._objects.list_cluster_custom_object(
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                PLURAL,
                field_selector=self._field_selector,
                _request_timeout=kube.REQUEST_TIMEOUT,
            ),
        )
        existing: list[dict[str, Any]] = sorted(
            listing.get("items") or [], key=lambda s: s["metadata"]["name"]
        )
        resource_version = str(listing["metadata"]["resourceVersion"])
        desired = build_slice_specs(
            self._driver_name, self._node_name, self._devices, self._shared, generation=0
        )
        if self._up_to_date(existing, desired, node_uid):
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
            self._remember_stored_form(spec, stored)
        for leftover in [*reusable, *obsolete]:
            self._delete(leftover)
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

    def _node_uid(self) -> str:
        node = self._core.read_node(self._node_name, _request_timeout=kube.REQUEST_TIMEOUT)
        if node.metadata is None or not node.metadata.uid:
            raise RuntimeError(f"node {self._node_name} has no UID")
        return node.metadata.uid

    def _create(self, spec: Mapping[str, Any], node_uid: str) -> dict[str, Any]:
        body = new_slice(self._driver_name, self._node_name, node_uid, spec)
        created = cast(
            dict[str, Any],
            self._objects.create_cluster_custom_object(
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                PLURAL,
                body,
                _request_timeout=kube.REQUEST_TIMEOUT,
            ),
        )
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
        replaced = cast(
            dict[str, Any],
            self._objects.replace_cluster_custom_object(
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                PLURAL,
                metadata["name"],
                body,
                _request_timeout=kube.REQUEST_TIMEOUT,
            ),
        )
        log.info("updated ResourceSlice", extra={"slice": metadata["name"]})
        return replaced

    def _delete(self, obsolete: Mapping[str, Any]) -> None:
        name = obsolete["metadata"]["name"]
        try:
            self._objects.delete_cluster_custom_object(
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                PLURAL,
                name,
                _request_timeout=kube.REQUEST_TIMEOUT,
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        log.info("deleted ResourceSlice", extra={"slice": name})


def _generation(slice_obj: Mapping[str, Any]) -> int:
    return int(slice_obj["spec"].get("pool", {}).get("generation", 0))
