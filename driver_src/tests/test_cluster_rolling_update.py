"""Prepared claims hand over between two driver processes on one node.

During a rolling update the old and the new driver pod serve at the same
time, and the kubelet may prepare a claim through one and unprepare it
through the other. Both processes keep the prepared claims in memory, so
each must see the other's changes: every state change runs under an flock
on `state.lock` in the plugin directory, and whoever takes it reloads the
checkpoint first if another process replaced it (device_state). Without
that, one process would commit from a stale copy and drop the other's
claims, or refuse a device the other has already released.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dra_file_driver import config

from .cluster_kit import DriverProcess, StartProcess, allocate, as_claim, create_claim, result
from .driver_testkit import NodeDirs, assert_consistent, directory_flags, file_lines, new_uid
from .kubelet_client import Claim, KubeletClient

pytestmark = pytest.mark.cluster

FILE_COUNT = 8


@pytest.fixture
def kubelets() -> Iterator[list[KubeletClient]]:
    clients: list[KubeletClient] = []
    yield clients
    for c in clients:
        c.close()


def start_pair(
    driver_process: StartProcess, kubelets: list[KubeletClient]
) -> tuple[KubeletClient, KubeletClient, DriverProcess]:
    """The old and the new instance on the same directories, each with a kubelet client."""
    clients = []
    for _ in ("old", "new"):
        pod_uid = new_uid()
        proc = driver_process("--file-count", str(FILE_COUNT), "--pod-uid", pod_uid)
        cfg = config.parse(
            ["--node-name", proc.node, *directory_flags(proc.base), "--pod-uid", pod_uid], {}
        )
        client = KubeletClient(cfg.registration_socket)
        kubelets.append(client)
        client.register()
        clients.append(client)
    return clients[0], clients[1], proc


def dirs_of(proc: DriverProcess) -> NodeDirs:
    return NodeDirs(proc.plugin_dir, proc.cdi_dir, proc.file_dir)


def test_a_claim_prepared_by_one_instance_is_unprepared_by_the_other(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelets: list[KubeletClient],
) -> None:
    old, new, proc = start_pair(driver_process, kubelets)

    def claim_on(device: str, pod: str) -> Claim:
        created = create_claim(admin_api, test_namespace)
        return as_claim(allocate(admin_api, created, [result(device, node)], pods=[pod]))

    first = claim_on("file1", "web-0")
    prepared = old.prepare([first])[first.uid]
    assert prepared.error == ""
    assert file_lines(proc.file_dir / "file1") == ["web-0"]

    # The kubelet retries through the new instance: the same answer.
    assert new.prepare([first])[first.uid] == prepared
    assert new.unprepare([first]) == {first.uid: ""}
    assert file_lines(proc.file_dir / "file1") == []

    # The old instance sees the release: the exclusive device is free again.
    second = claim_on("file1", "web-1")
    assert old.prepare([second])[second.uid].error == ""
    assert file_lines(proc.file_dir / "file1") == ["web-1"]
    assert [c.uid for c in assert_consistent(dirs_of(proc), FILE_COUNT)] == [second.uid]


def test_concurrent_changes_through_both_instances_lose_nothing(
    admin_api: Any,
    node: str,
    test_namespace: str,
    driver_process: StartProcess,
    kubelets: list[KubeletClient],
) -> None:
    old, new, proc = start_pair(driver_process, kubelets)
    claims = [
        as_claim(
            allocate(
                admin_api,
                create_claim(admin_api, test_namespace),
                [result(f"file{i}", node)],
                pods=[f"pod-{i}"],
            )
        )
        for i in range(1, FILE_COUNT + 1)
    ]
    # Alternate instances, one claim per call, all at once: every commit of
    # one process races with commits of the other.
    through = [old if i % 2 else new for i in range(len(claims))]
    with ThreadPoolExecutor(max_workers=len(claims)) as pool:
        answers = list(pool.map(lambda kubelet, claim: kubelet.prepare([claim]), through, claims))
    assert [a[c.uid].error for a, c in zip(answers, claims, strict=True)] == [""] * len(claims)
    for i in range(1, FILE_COUNT + 1):
        assert file_lines(proc.file_dir / f"file{i}") == [f"pod-{i}"]
    assert {c.uid for c in assert_consistent(dirs_of(proc), FILE_COUNT)} == {c.uid for c in claims}

    # Unprepare each claim through the instance that did not prepare it.
    crosswise = [new if i % 2 else old for i in range(len(claims))]
    with ThreadPoolExecutor(max_workers=len(claims)) as pool:
        errors = list(
            pool.map(lambda kubelet, claim: kubelet.unprepare([claim]), crosswise, claims)
        )
    assert errors == [{c.uid: ""} for c in claims]
    assert assert_consistent(dirs_of(proc), FILE_COUNT) == []
