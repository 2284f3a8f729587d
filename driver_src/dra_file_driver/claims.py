"""From a claim the kubelet names to what this driver must prepare for it.

The kubelet sends only namespace, name and UID; the allocation and the
consuming pods are in the ResourceClaim object. Fetching it (ClaimSource) is
kept apart from checking it (resolve_claim, a pure function), so every check
can be tested on plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client

from . import kube, names
from .devices import FileDevice
from .prepared import PreparedClaim, PreparedDevice

# Bound (seconds) on reading one claim when the caller sets no deadline.
READ_TIMEOUT = 20.0


class ClaimError(Exception):
    """A claim cannot be prepared; the message is returned to the kubelet."""


@dataclass(frozen=True)
class ClaimRef:
    """A claim as the kubelet names it."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ClaimSource(Protocol):
    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        """The ResourceClaim object; raise ClaimError if it cannot be had.

        timeout (seconds) bounds the whole read: a source that cannot answer
        within it raises ClaimError instead of holding up the request.
        """
        ...


class ApiClaimSource:
    """Reads ResourceClaims from the API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)

    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        try:
            obj = self._objects.get_namespaced_custom_object(
                kube.RESOURCE_GROUP,
                kube.RESOURCE_VERSION,
                ref.namespace,
                "resourceclaims",
                ref.name,
                _request_timeout=timeout,
            )
        except client.ApiException as exc:
            if exc.status == 404:
                raise ClaimError(f"claim {ref} does not exist") from exc
            raise ClaimError(f"cannot read claim {ref}: {kube.describe_error(exc)}") from exc
        except Exception as exc:  # any transport failure is a per-claim error
            raise ClaimError(f"cannot read claim {ref}: {kube.describe_error(exc)}") from exc
        if not isinstance(obj, Mapping):
            raise ClaimError(f"cannot read claim {ref}: unexpected answer {obj!r:.200}")
        return obj


def base_request_name(request: str) -> str:
    """'req/sub' -> 'req': the kubelet matches containers against base names."""
    return request.split("/", 1)[0]


def resolve_claim(
    obj: Mapping[str, Any],
    ref: ClaimRef,
    driver_name: str,
    node_name: str,
    devices: Mapping[str, FileDevice],
) -> PreparedClaim:
    """Check a fetched claim and return what to prepare; raise ClaimError if unusable.

    Only allocation results of this driver are taken; results of other
    drivers belong to them (the kubelet calls each driver of a claim). This
    driver publishes one pool per node, named after the node, so a result of
    this driver from any other pool was meant for another node.
    """
    uid = obj.get("metadata", {}).get("uid")
    if uid != ref.uid:
        raise ClaimError(
            f"claim {ref} has UID {uid}, but UID {ref.uid} was requested: "
            "the claim was deleted and re-created"
        )
    allocation = (obj.get("status") or {}).get("allocation")
    if not allocation:
        raise ClaimError(f"claim {ref} is not allocated")

    results = [
        r
        for r in (allocation.get("devices") or {}).get("results") or []
        if r.get("driver") == driver_name
    ]
    if not results:
        raise ClaimError(f"claim {ref} has no device allocated by driver {driver_name}")
    prepared_devices = []
    for result in results:
        pool, device_name = result.get("pool"), result.get("device")
        if pool != node_name:
            raise ClaimError(
                f"claim {ref}: device {device_name} is allocated from pool {pool}, "
                f"which belongs to another node (this node's pool is {node_name})"
            )
        device = devices.get(str(device_name))
        if device is None:
            raise ClaimError(
                f"claim {ref}: device {device_name} is not a device of node {node_name} "
                f"(it has {', '.join(sorted(devices)) or 'none'})"
            )
        share_id = result.get("shareID")
        prepared_devices.append(
            PreparedDevice(
                request=base_request_name(str(result.get("request", ""))),
                pool=pool,
                device=device.name,
                path=str(device.path),
                share_id=str(share_id) if share_id is not None else None,
            )
        )

    return PreparedClaim(
        uid=ref.uid,
        namespace=ref.namespace,
        name=ref.name,
        pods=consuming_pods(obj, ref),
        devices=tuple(prepared_devices),
    )


def consuming_pods(obj: Mapping[str, Any], ref: ClaimRef) -> tuple[str, ...]:
    """Names of the pods in status.reservedFor, checked, in order.

    Other consumer kinds (a PodGroup with DRAWorkloadResourceClaims, or
    anything newer) hold the claim but have no pod name to write; they are
    skipped, not treated as errors.
    """
    pods = []
    for consumer in (obj.get("status") or {}).get("reservedFor") or []:
        if consumer.get("resource") != "pods" or consumer.get("apiGroup", "") != "":
            continue
        pod = consumer.get("name")
        problem = names.dns1123_subdomain_error(pod) if isinstance(pod, str) else "not a string"
        if problem is not None:
            raise ClaimError(
                f"claim {ref}: pod name {pod!r} in status.reservedFor is not a valid "
                f"Kubernetes name: {problem}"
            )
        pods.append(pod)
    return tuple(pods)
