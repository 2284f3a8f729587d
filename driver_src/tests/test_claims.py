"""The pure claim checks: what a fetched ResourceClaim must look like to be prepared."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver import names
from dra_file_driver.claims import ClaimError, ClaimRef, base_request_name, resolve_claim
from dra_file_driver.devices import inventory
from dra_file_driver.prepared import PreparedDevice

from .driver_testkit import DRIVER, NODE, claim_object, result

DEVICES = {d.name: d for d in inventory(Path("/etc/dra"), 2)}
REF = ClaimRef(namespace="ns", name="claim", uid="uid-1")


def resolve(obj: dict[str, Any]) -> Any:
    return resolve_claim(obj, REF, DRIVER, NODE, DEVICES)


def good(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "namespace": "ns",
        "name": "claim",
        "uid": "uid-1",
        "results": [result("file1")],
        "pods": ["pod-a"],
    }
    args.update(kwargs)
    return claim_object(**args)


def test_resolves_devices_and_pods() -> None:
    claim = resolve(
        good(
            results=[
                result("file1", request="files/first"),
                result("gpu-0", driver="gpu.example.com", pool="whatever"),
                {**result("file2", request="b"), "shareID": "share-1"},
            ],
            pods=["pod-a", "pod-b"],
        )
    )
    assert claim.uid == "uid-1"
    assert claim.pods == ("pod-a", "pod-b")
    assert claim.devices == (
        PreparedDevice("files", NODE, "file1", "/etc/dra/file1"),
        PreparedDevice("b", NODE, "file2", "/etc/dra/file2", share_id="share-1"),
    )


def test_base_request_name() -> None:
    assert base_request_name("req/sub") == "req"
    assert base_request_name("req") == "req"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (good(uid="uid-2"), "has UID uid-2, but UID uid-1 was requested"),
        (good(allocated=False), "is not allocated"),
        (
            good(results=[result("file1", driver="other.example.com")]),
            "no device allocated by driver",
        ),
        (good(results=[]), "no device allocated by driver"),
        (
            good(results=[result("file1", pool="node-b")]),
            "pool node-b, which belongs to another node",
        ),
        (good(results=[result("file9")]), "device file9 is not a device of node node-a"),
        (good(pods=["pod\ninjected"]), "'pod\\ninjected' in status.reservedFor is not a valid"),
        (good(pods=["../../etc/passwd"]), "is not a valid Kubernetes name"),
        (good(pods=["a/b"]), "is not a valid Kubernetes name"),
        (good(pods=["x" * 254]), "no more than 253 characters"),
        (good(pods=["Upper"]), "is not a valid Kubernetes name"),
    ],
)
def test_rejects_bad_claims_with_a_reason(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ClaimError) as info:
        resolve(obj)
    assert message in str(info.value)
    assert "ns/claim" in str(info.value)


def test_non_pod_consumers_are_ignored() -> None:
    obj = good(
        reserved_for=[
            {"resource": "podgroups", "apiGroup": "scheduling.k8s.io", "name": "Grp/1", "uid": "1"},
            {"resource": "pods", "name": "pod-a", "uid": "2"},
            {"resource": "pods", "apiGroup": "example.com", "name": "not/a/pod", "uid": "3"},
        ]
    )
    assert resolve(obj).pods == ("pod-a",)


@pytest.mark.parametrize(
    ("reserved_for", "message"),
    [
        (None, "has no consumer"),
        ([], "has no consumer"),
        (
            [{"resource": "podgroups", "apiGroup": "scheduling.k8s.io", "name": "g", "uid": "1"}],
            "has only podgroups.scheduling.k8s.io",
        ),
        (
            [{"resource": "pods", "apiGroup": "example.com", "name": "p", "uid": "1"}],
            "has only pods.example.com",
        ),
    ],
    ids=["no-reservedFor", "empty-reservedFor", "only-podgroup", "pods-of-another-group"],
)
def test_a_claim_reserved_for_no_pod_is_an_error(
    reserved_for: list[dict[str, Any]] | None, message: str
) -> None:
    """No pod, no name to write: the kubelet must retry, not get a nameless prepare."""
    obj = good(pods=[])
    if reserved_for is not None:
        obj["status"]["reservedFor"] = reserved_for
    with pytest.raises(ClaimError) as info:
        resolve(obj)
    assert "ns/claim is not reserved for any pod" in str(info.value)
    assert message in str(info.value)


# Every field the driver reads, by its path in the claim, and the JSON type it must have.
FIELD_TYPES: dict[tuple[str | int, ...], type] = {
    (): dict,
    ("metadata",): dict,
    ("metadata", "uid"): str,
    ("status",): dict,
    ("status", "allocation"): dict,
    ("status", "allocation", "devices"): dict,
    ("status", "allocation", "devices", "results"): list,
    ("status", "allocation", "devices", "results", 0): dict,
    ("status", "allocation", "devices", "results", 0, "driver"): str,
    ("status", "allocation", "devices", "results", 0, "pool"): str,
    ("status", "allocation", "devices", "results", 0, "device"): str,
    ("status", "allocation", "devices", "results", 0, "request"): str,
    ("status", "allocation", "devices", "results", 0, "shareID"): str,
    ("status", "reservedFor"): list,
    ("status", "reservedFor", 0): dict,
    ("status", "reservedFor", 0, "resource"): str,
    ("status", "reservedFor", 0, "apiGroup"): str,
    ("status", "reservedFor", 0, "name"): str,
}
WRONG_VALUES: list[Any] = [[], ["x"], {}, {"a": 1}, "", "text", 0, 7, -1.5, True, False]


def json_path(path: tuple[str | int, ...]) -> str:
    """("status", "reservedFor", 0, "name") -> "status.reservedFor[0].name"."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else key
    return text


def replaced(obj: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of obj with the value at path replaced."""
    if not path:
        return value
    copy = json.loads(json.dumps(obj))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return copy


def full_claim() -> dict[str, Any]:
    """A good claim in which every field of FIELD_TYPES is present."""
    obj = good(
        results=[{**result("file1"), "shareID": "s1"}, result("file2", request="other")],
        reserved_for=[
            {"resource": "pods", "apiGroup": "", "name": "pod-a", "uid": "1"},
            {"resource": "pods", "name": "pod-b", "uid": "2"},
        ],
    )
    assert resolve(obj).pods == ("pod-a", "pod-b")
    return obj


WRONG_TYPE_CASES = [
    pytest.param(path, value, id=f"{json_path(path) or 'claim'}={json.dumps(value)}")
    for path, expected in FIELD_TYPES.items()
    for value in WRONG_VALUES
    if not isinstance(value, expected)
]


@pytest.mark.parametrize(("path", "value"), WRONG_TYPE_CASES)
def test_a_field_of_the_wrong_json_type_is_a_claim_error(
    path: tuple[str | int, ...], value: Any
) -> None:
    obj = replaced(full_claim(), path, value)
    with pytest.raises(ClaimError) as info:
        resolve(obj)
    message = str(info.value)
    assert message.startswith("claim ns/claim ")
    assert f"is malformed: {json_path(path) or 'the object'} is " in message


@pytest.mark.parametrize("value", [None, [], "claim", 3, True])
def test_a_claim_that_is_not_an_object_is_a_claim_error(value: Any) -> None:
    with pytest.raises(ClaimError, match="is malformed: the object is "):
        resolve(value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("metadata",), "is malformed: metadata is missing, expected an object"),
        (("metadata", "uid"), "is malformed: metadata.uid is missing, expected a string"),
        (("status", "allocation", "devices", "results", 0, "driver"), "results[0].driver is"),
        (("status", "allocation", "devices", "results", 0, "device"), "results[0].device is"),
        (("status", "allocation", "devices", "results", 0, "pool"), "results[0].pool is"),
        (("status", "allocation", "devices", "results", 0, "request"), "results[0].request is"),
        (("status", "reservedFor", 0, "resource"), "reservedFor[0].resource is missing"),
        (("status", "reservedFor", 0, "name"), "pod name '' in status.reservedFor"),
    ],
)
def test_a_missing_required_field_is_a_claim_error(
    path: tuple[str | int, ...], message: str
) -> None:
    obj = full_claim()
    parent: Any = obj
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(ClaimError) as info:
        resolve(obj)
    assert message in str(info.value)


def test_an_empty_request_name_is_a_claim_error() -> None:
    with pytest.raises(ClaimError, match=r"results\[0\]\.request is empty"):
        resolve(good(results=[result("file1", request="")]))


def test_optional_fields_may_be_null() -> None:
    obj = full_claim()
    obj["status"]["allocation"]["devices"]["results"][0]["shareID"] = None
    obj["status"]["reservedFor"][0]["apiGroup"] = None
    claim = resolve(obj)
    assert claim.devices[0].share_id is None
    assert claim.pods == ("pod-a", "pod-b")
    obj["status"]["allocation"] = None
    with pytest.raises(ClaimError, match="is not allocated"):
        resolve(obj)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Some JSON value: a scalar, or (not too deep) a list or object of them."""
    kinds = ["null", "bool", "int", "float", "str", "name"]
    if depth < 3:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        keys = [*FIELD_NAMES, "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return {
        "null": None,
        "bool": rng.random() < 0.5,
        "int": rng.randint(-3, 3),
        "float": rng.random(),
        "str": rng.choice(["", "pods", "file1", NODE, DRIVER, "uid-1", "a/b", "\n"]),
        "name": rng.choice(["pod-a", "file2", "req/sub"]),
    }[kind]


FIELD_NAMES = sorted({key for path in FIELD_TYPES for key in path if isinstance(key, str)})


def places(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path in a JSON value (the value itself included)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from places(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from places(child, (*path, index))


def mutate(rng: random.Random, obj: Any) -> Any:
    """obj with one random change: a value replaced, a key dropped, or a key added."""
    path = rng.choice(list(places(obj)))
    action = rng.random()
    if action < 0.6 or not path:
        return replaced(obj, path, random_json(rng))
    copy = json.loads(json.dumps(obj))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if action < 0.8:
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[rng.choice(FIELD_NAMES)] = random_json(rng)
    else:
        parent.insert(rng.randint(0, len(parent)), random_json(rng))
    return copy


def test_random_mutations_either_resolve_or_raise_claim_error() -> None:
    """A seeded random walk over malformed claims: nothing but ClaimError escapes.

    Each round applies a few random changes to a good claim. What resolves
    must still satisfy the driver's promises (valid pod names, this node's
    devices); everything else must be a ClaimError naming the claim.
    """
    rng = random.Random(13)  # noqa: S311 -- reproducible test data, not a secret
    base = full_claim()
    rejections: list[str] = []
    resolved = 0
    for _ in range(4000):
        obj = base
        for _ in range(rng.randint(1, 4)):
            obj = mutate(rng, obj)
        try:
            claim = resolve(obj)
        except ClaimError as exc:
            rejections.append(str(exc))
            continue
        resolved += 1
        assert claim.pods
        assert all(names.dns1123_subdomain_error(p) is None for p in claim.pods)
        assert {d.device for d in claim.devices} <= set(DEVICES)
        assert all(d.pool == NODE and d.request for d in claim.devices)
    assert [m for m in rejections if not re.match(r"claim ns/claim[ :]", m)] == []
    # The walk must reach both sides, or it tests nothing.
    assert resolved > 100
    assert len(rejections) > 1000
