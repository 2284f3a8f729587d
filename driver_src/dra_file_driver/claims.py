"""From a claim the kubelet names to what this driver must prepare for it.

The kubelet sends only namespace, name and UID; the allocation and the
consuming pods are in the ResourceClaim object. Fetching it (ClaimSource) is
kept apart from checking it (resolve_claim, a pure function), so every check
can be tested on plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any, Protocol

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

    def __init__(self, api: kube.Api) -> None:
        self._api = api

    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        path = kube.object_path(
            kube.RESOURCE_API_VERSION, "resourceclaims", ref.name, namespace=ref.namespace
        )
        try:
            return self._api.request("GET", path, timeout=timeout)
        except kube.ApiError as exc:
            if exc.status == 404:
                raise ClaimError(f"claim {ref} does not exist") from exc
            raise ClaimError(f"cannot read claim {ref}: {kube.describe_error(exc)}") from exc
        except Exception as exc:  # any transport failure is a per-claim error
            raise ClaimError(f"cannot read claim {ref}: {kube.describe_error(exc)}") from exc


def base_request_name(request: str) -> str:
    """'req/sub' -> 'req': the kubelet matches containers against base names."""
    return request.split("/", 1)[0]


def resolve_claim(
    obj: object,
    ref: ClaimRef,
    driver_name: str,
    node_name: str,
    devices: Mapping[str, FileDevice],
) -> PreparedClaim:
    """Check a fetched claim and return what to prepare; raise ClaimError if unusable.

    The object is untrusted JSON: every field is checked for its type before
    use, so a malformed claim is this claim's error, never an exception that
    fails the whole request.

    Only allocation results of this driver are taken; results of other
    drivers belong to them (the kubelet calls each driver of a claim). This
    driver publishes one pool per node, named after the node, so a result of
    this driver from any other pool was meant for another node.
    """
    claim = _Field(ref, "", obj).as_object()
    uid = claim.get("metadata").as_object().get("uid").as_string()
    if uid != ref.uid:
        raise ClaimError(
            f"claim {ref} has UID {uid}, but UID {ref.uid} was requested: "
            "the claim was deleted and re-created"
        )
    allocation = claim.get("status").as_object(optional=True).get("allocation")
    if not allocation.as_object(optional=True).value:
        raise ClaimError(f"claim {ref} is not allocated")
    results = allocation.get("devices").as_object(optional=True).get("results")

    prepared_devices = []
    for result in results.as_list(optional=True).items():
        if result.as_object().get("driver").as_string() == driver_name:
            prepared_devices.append(_prepared_device(result, ref, node_name, devices))
    if not prepared_devices:
        raise ClaimError(f"claim {ref} has no device allocated by driver {driver_name}")

    return PreparedClaim(
        uid=ref.uid,
        namespace=ref.namespace,
        name=ref.name,
        pods=consuming_pods(obj, ref),
        devices=tuple(prepared_devices),
    )


def _prepared_device(
    result: _Field, ref: ClaimRef, node_name: str, devices: Mapping[str, FileDevice]
) -> PreparedDevice:
    """One allocation result of this driver, checked against this node's devices."""
    pool = result.get("pool").as_string()
    device_name = result.get("device").as_string()
    request = result.get("request").as_string()
    share_id = result.get("shareID").as_optional_string()
    if pool != node_name:
        raise ClaimError(
            f"claim {ref}: device {device_name} is allocated from pool {pool}, "
            f"which belongs to another node (this node's pool is {node_name})"
        )
    device = devices.get(device_name)
    if device is None:
        raise ClaimError(
            f"claim {ref}: device {device_name} is not a device of node {node_name} "
            f"(it has {', '.join(sorted(devices)) or 'none'})"
        )
    if not request:
        raise ClaimError(f"claim {ref} is malformed: {result.path}.request is empty")
    return PreparedDevice(
        request=base_request_name(request),
        pool=pool,
        device=device.name,
        path=str(device.path),
        share_id=share_id,
    )


def consuming_pods(obj: object, ref: ClaimRef) -> tuple[str, ...]:
    """Names of the pods in status.reservedFor, checked, in order; at least one.

    The kubelet prepares a claim for a pod, and the pod's name is what the
    device file is for, so a claim reserved for no pod (no reservedFor, only
    other consumers, or the pod's reservation removed after the kubelet
    looked) is an error: the kubelet retries, and by then the pod is either
    reserved again or gone. Other consumer kinds next to a pod (a PodGroup
    with DRAWorkloadResourceClaims, or anything newer) hold the claim but
    have no pod name to write; they are skipped.
    """
    claim = _Field(ref, "", obj).as_object()
    reserved_for = claim.get("status").as_object(optional=True).get("reservedFor")
    pods, others = [], set()
    for consumer in reserved_for.as_list(optional=True).items():
        resource = consumer.as_object().get("resource").as_string()
        api_group = consumer.get("apiGroup").as_optional_string() or ""
        if resource != "pods" or api_group != "":
            others.add(f"{resource}.{api_group}" if api_group else resource)
            continue
        pod = consumer.get("name").as_optional_string() or ""
        problem = names.dns1123_subdomain_error(pod)
        if problem is not None:
            raise ClaimError(
                f"claim {ref}: pod name {pod!r} in status.reservedFor is not a valid "
                f"Kubernetes name: {problem}"
            )
        pods.append(pod)
    if not pods:
        consumers = f"only {', '.join(sorted(others))}" if others else "no consumer"
        raise ClaimError(
            f"claim {ref} is not reserved for any pod (status.reservedFor has {consumers}); "
            "there is no pod to prepare it for"
        )
    return tuple(pods)


class _Field:
    """A value of the claim's untrusted JSON, with its path, read with type checks.

    JSON null reads like an absent field: the API server omits empty
    optional fields, and a null says no more than that.
    """

    def __init__(self, ref: ClaimRef, path: str, value: object) -> None:
        self._ref = ref
        self.path = path
        self.value: Any = value

    def get(self, key: str) -> _Field:
        """The field key of this object (call as_object() first)."""
        return _Field(self._ref, f"{self.path}.{key}" if self.path else key, self.value.get(key))

    def items(self) -> Iterator[_Field]:
        """The elements of this list (call as_list() first)."""
        for index, value in enumerate(self.value):
            yield _Field(self._ref, f"{self.path}[{index}]", value)

    def as_object(self, *, optional: bool = False) -> _Field:
        if self.value is None and optional:
            return _Field(self._ref, self.path, {})
        if not isinstance(self.value, Mapping):
            raise self._malformed("an object")
        return self

    def as_list(self, *, optional: bool = False) -> _Field:
        if self.value is None and optional:
            return _Field(self._ref, self.path, [])
        if not isinstance(self.value, list):
            raise self._malformed("a list")
        return self

    def as_string(self) -> str:
        if not isinstance(self.value, str):
            raise self._malformed("a string")
        return self.value

    def as_optional_string(self) -> str | None:
        return None if self.value is None else self.as_string()

    def _malformed(self, expected: str) -> ClaimError:
        return ClaimError(
            f"claim {self._ref} is malformed: {self.path or 'the object'} is "
            f"{_json_type(self.value)}, expected {expected}"
        )


# JSON type names for error messages; bool before number (bool is an int).
_JSON_TYPES: tuple[tuple[type | UnionType, str], ...] = (
    (bool, "a boolean"),
    (int | float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (Mapping, "an object"),
)


def _json_type(value: object) -> str:
    """What value is, in JSON terms, with the value itself if it is short."""
    if value is None:
        return "missing"
    name = next((n for t, n in _JSON_TYPES if isinstance(value, t)), type(value).__name__)
    if isinstance(value, list | Mapping):
        return name
    return f"{name} {value!r:.40}"
