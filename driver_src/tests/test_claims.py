"""The pure claim checks: what a fetched ResourceClaim must look like to be prepared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def test_no_consumers_prepares_without_pod_names() -> None:
    assert resolve(good(pods=[])).pods == ()
