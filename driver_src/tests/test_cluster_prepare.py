"""NodePrepare/NodeUnprepare with claims from the real API server.

Allocations come either from the real scheduler (end to end) or are written
into claim status by an admin client, the way the scheduler writes them, to
reach the error branches with objects the API server has validated. Invalid
pod names cannot be kept in a real claim (see
test_api_server_accepts_bad_pod_names_in_reserved_for); they are covered with
the fake claim source in test_grpc.py.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from dra_file_driver import cdi

from .cluster_kit import (
    DRIVER,
    GROUP,
    VERSION,
    StartProcess,
    allocate,
    as_claim,
    consumer_pod,
    create_claim,
    result,
    unique,
)
from .driver_testkit import NodeDirs, assert_consistent, file_lines, new_uid, wait_for
from .kubelet_client import Claim, KubeletClient

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet() -> Iterator[list[KubeletClient]]:
    clients: list[KubeletClient] = []
    yield clients
    for c in clients:
        c.close()


def connect(proc: Any, clients: list[KubeletClient]) -> KubeletClient:
    kubelet = KubeletClient(proc.registration_socket)
    clients.append(kubelet)
    kubelet.register()
    return kubelet


def dirs_of(proc: Any) -> NodeDirs:
    return NodeDirs(proc.plugin_dir, proc.cdi_dir, proc.file_dir)


def test_allocated_claim_is_prepared_with_its_pods(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelet: list[KubeletClient],
) -> None:
    proc = driver_process("--file-count", "2")
    client_ = connect(proc, kubelet)
    claim = allocate(
        admin_api,
        create_claim(admin_api, test_namespace, requests=("files",)),
        [result("file2", node)],
        pods=["web-0", "web-1"],
    )
    ref = as_claim(claim)
    answer = client_.prepare([ref])[ref.uid]
    assert answer.error == ""
    (device,) = answer.devices
    assert (device.request_names, device.pool_name, device.device_name) == (
        ("files",),
        node,
        "file2",
    )
    assert device.cdi_device_ids == (f"k8s.{DRIVER}/file={ref.uid}-file2",)
    assert file_lines(proc.file_dir / "file2") == ["web-0", "web-1"]
    spec = json.loads(cdi.SpecDirectory(proc.cdi_dir, DRIVER).path(ref.uid).read_text())
    assert spec["devices"][0]["containerEdits"]["mounts"][0]["hostPath"] == str(
        proc.file_dir / "file2"
    )

    # Unprepare must work from the checkpoint alone: the claim is gone.
    client.CustomObjectsApi(admin_api).delete_namespaced_custom_object(
        GROUP, VERSION, test_namespace, "resourceclaims", ref.name
    )
    assert client_.prepare([ref])[ref.uid] == answer
    assert client_.unprepare([ref]) == {ref.uid: ""}
    assert file_lines(proc.file_dir / "file2") == []
    assert assert_consistent(dirs_of(proc), 2) == []


def test_api_server_accepts_bad_pod_names_in_reserved_for(
    admin_api: Any, test_namespace: str
) -> None:
    """The API server does not validate reservedFor names, so the driver must.

    Such entries cannot be made to last, though: the resourceclaim controller
    drops reservations of pods that do not exist, and a pod with such a name
    never can. The driver's handling of them is therefore tested with the
    fake claim source (test_grpc.py) and the pure checks (test_claims.py).
    """
    names = ["pod\nx", "a/b", "..", "p" * 254]
    claim = allocate(
        admin_api,
        create_claim(admin_api, test_namespace),
        [result("file1", "some-node")],
        reserved_for=[{"resource": "pods", "name": n, "uid": new_uid()} for n in names],
    )
    assert [c["name"] for c in claim["status"]["reservedFor"]] == names


def test_bad_claims_get_per_claim_errors_and_change_nothing(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelet: list[KubeletClient],
) -> None:
    proc = driver_process("--file-count", "2")
    client_ = connect(proc, kubelet)
    ns = test_namespace

    def allocated(results: list[dict[str, Any]], pods: list[str] = ["p"]) -> Claim:  # noqa: B006
        return as_claim(allocate(admin_api, create_claim(admin_api, ns), results, pods=pods))

    good = allocated([result("file1", node)], ["good-pod"])
    assert client_.prepare([good])[good.uid].error == ""
    replaced = as_claim(create_claim(admin_api, ns))
    cases = {
        "missing": (Claim(ns, unique("missing"), new_uid()), "does not exist"),
        "uid mismatch": (Claim(ns, replaced.name, new_uid()), "was deleted and re-created"),
        "not allocated": (as_claim(create_claim(admin_api, ns)), "is not allocated"),
        "other driver": (
            allocated([result("file2", node, driver="gpu.example.com")]),
            f"no device allocated by driver {DRIVER}",
        ),
        "other node": (
            allocated([result("file2", "other-node")]),
            "pool other-node, which belongs to another node",
        ),
        "unknown device": (allocated([result("file9", node)]), "device file9 is not a device"),
        "exclusive device taken": (allocated([result("file1", node)]), "already prepared for"),
        "no consumer": (allocated([result("file2", node)], pods=[]), "not reserved for any pod"),
        "only a non-pod consumer": (
            as_claim(
                allocate(
                    admin_api,
                    create_claim(admin_api, ns),
                    [result("file2", node)],
                    reserved_for=[NON_POD_CONSUMER],
                )
            ),
            "has only podgroups.scheduling.k8s.io",
        ),
    }
    answer = client_.prepare([claim for claim, _ in cases.values()])
    for case, (claim, message) in cases.items():
        assert message in answer[claim.uid].error, case
        assert answer[claim.uid].devices == (), case
    assert file_lines(proc.file_dir / "file1") == ["good-pod"]
    assert file_lines(proc.file_dir / "file2") == []
    assert [c.uid for c in assert_consistent(dirs_of(proc), 2)] == [good.uid]
    assert client_.prepare([good])[good.uid].error == ""  # still serving


# A consumer the driver has no name to write for (a PodGroup holding the claim
# for DRAWorkloadResourceClaims); the API server accepts any resource here.
NON_POD_CONSUMER = {
    "apiGroup": "scheduling.k8s.io",
    "resource": "podgroups",
    "name": "group",
    "uid": "6c0a3f52-0d5e-4f4e-9a4b-6f8d1c2b3a4e",
}


def test_a_reservation_removed_before_the_read_is_an_error(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelet: list[KubeletClient],
) -> None:
    """The kubelet saw the pod in reservedFor; by the time the driver reads the
    claim the reservation is gone. No pod, nothing to prepare: an error the
    kubelet retries on, and nothing written."""
    proc = driver_process("--file-count", "2")
    client_ = connect(proc, kubelet)
    claim = allocate(
        admin_api,
        create_claim(admin_api, test_namespace),
        [result("file1", node)],
        pods=["leaving"],
    )
    assert [c["name"] for c in claim["status"]["reservedFor"]] == ["leaving"]
    # The status written again, with the same allocation and no reservation.
    unreserved = allocate(admin_api, claim, [result("file1", node)], reserved_for=[])
    assert "reservedFor" not in unreserved["status"]
    ref = as_claim(unreserved)
    answer = client_.prepare([ref])[ref.uid]
    assert "is not reserved for any pod (status.reservedFor has no consumer)" in answer.error
    assert answer.devices == ()
    assert file_lines(proc.file_dir / "file1") == []
    assert assert_consistent(dirs_of(proc), 2) == []


def test_real_scheduler_allocates_and_prepare_writes_the_pod_names(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelet: list[KubeletClient],
) -> None:
    """End to end without a kubelet: our slices, the real scheduler, our prepare."""
    proc = driver_process("--shared")
    client_ = connect(proc, kubelet)
    objects = client.CustomObjectsApi(admin_api)
    core = client.CoreV1Api(admin_api)
    device_class = unique("file-class")
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "deviceclasses",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {
                "selectors": [
                    {
                        "cel": {
                            "expression": f"device.driver == '{DRIVER}' && "
                            f"device.attributes['{DRIVER}'].shared"
                        }
                    }
                ]
            },
        },
    )
    try:
        claims = [
            as_claim(create_claim(admin_api, test_namespace, device_class=device_class))
            for _ in range(2)
        ]
        pods = [unique("consumer") for _ in claims]
        for pod, claim in zip(pods, claims, strict=True):
            core.create_namespaced_pod(test_namespace, consumer_pod(pod, node, claim.name))

        def scheduled() -> bool:
            specs = [core.read_namespaced_pod(p, test_namespace).spec for p in pods]
            return all(spec is not None and spec.node_name == node for spec in specs)

        wait_for(scheduled, 90, "the scheduler to bind both pods")
        answer = client_.prepare(claims)
        assert all(r.error == "" for r in answer.values()), answer
        assert {d.device_name for r in answer.values() for d in r.devices} == {"file1"}
        assert sorted(file_lines(proc.file_dir / "file1")) == sorted(pods)
        assert client_.unprepare(claims[:1]) == {claims[0].uid: ""}
        assert file_lines(proc.file_dir / "file1") == [pods[1]]
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", device_class)


def test_every_caller_of_a_shared_new_claim_gets_success_only_once_it_is_ready(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelet: list[KubeletClient],
) -> None:
    """Concurrent prepares of one new claim over gRPC, claims read from the API server.

    Two pods sharing a claim start together, or a kubelet retry overlaps the
    first call: at the moment each success arrives, the claim's CDI spec
    must exist and the pod must be in the device file, because the kubelet
    hands the CDI ID to the runtime at once.
    """
    proc = driver_process("--shared", "--file-count", "1")
    client_ = connect(proc, kubelet)
    specs = cdi.SpecDirectory(proc.cdi_dir, DRIVER)
    rounds, callers = 20, 12
    answers: list[str] = []
    answers_lock = threading.Lock()

    def prepare(ref: Claim, pod: str, start: threading.Barrier) -> None:
        start.wait()
        error = client_.prepare([ref])[ref.uid].error
        missing = [
            *([] if specs.path(ref.uid).exists() else ["spec"]),
            *([] if pod in file_lines(proc.file_dir / "file1") else ["pod name"]),
        ]
        answer = error or (" and ".join(missing) + " missing" if missing else "ok")
        with answers_lock:
            answers.append(answer)

    for round_ in range(rounds):
        pod = f"sharer-{round_}"
        ref = as_claim(
            allocate(
                admin_api,
                create_claim(admin_api, test_namespace),
                [result("file1", node)],
                pods=[pod],
            )
        )
        start = threading.Barrier(callers)
        threads = [threading.Thread(target=prepare, args=(ref, pod, start)) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert answers == ["ok"] * (rounds * callers), collections.Counter(answers)
    assert len(assert_consistent(dirs_of(proc), 1)) == rounds
