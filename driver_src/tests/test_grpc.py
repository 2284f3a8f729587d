"""The gRPC services over real Unix sockets, called the way the kubelet calls them.

Claims come from FakeClaimSource (no API server here); the same flows against
the real API server are in test_cluster_*.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dra_file_driver.app import Driver
from dra_file_driver.kubeletapi import dra_v1_pb2, dra_v1_pb2_grpc
from dra_file_driver.metrics import Metrics

from .driver_testkit import (
    DRIVER,
    NODE,
    FakeClaimSource,
    RunningDriver,
    StartDriver,
    assert_consistent,
    claim_object,
    file_lines,
    free_port,
    make_config,
    new_uid,
    result,
)
from .kubelet_client import Claim, KubeletClient, ProtocolError


def add(
    fake: FakeClaimSource,
    devices: list[str],
    pods: list[str],
    *,
    results: list[dict[str, str]] | None = None,
    allocated: bool = True,
) -> Claim:
    uid = new_uid()
    if results is None:
        results = [result(d, request=f"req{i}/sub") for i, d in enumerate(devices)]
    return fake.add(
        claim_object(
            namespace="ns",
            name=f"c-{uid[:8]}",
            uid=uid,
            results=results,
            pods=pods,
            allocated=allocated,
        )
    )


def health_status(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(response.status)


def test_get_info_answers_like_a_dra_plugin(start_driver: StartDriver) -> None:
    running = start_driver(register=False)
    info = running.kubelet.get_info()
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(running.cfg.dra_socket)
    assert Path(info.endpoint).is_absolute()
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert running.cfg.registration_socket.name == f"{DRIVER}-reg.sock"
    assert running.kubelet.register() == "v1.DRAPlugin"


def test_dra_socket_listens_before_registration_socket_appears(
    base_dir: Path, fake_claims: FakeClaimSource
) -> None:
    cfg = make_config(base_dir)
    driver = Driver(cfg, fake_claims, Metrics(), publisher=None)
    original_start = driver.registration_server.start
    seen: list[bool] = []

    def start_registration() -> None:
        assert not cfg.registration_socket.exists()
        with grpc.insecure_channel(f"unix:{cfg.dra_socket}") as channel:
            grpc.channel_ready_future(channel).result(timeout=5)
            seen.append(True)
        original_start()

    driver.registration_server.start = start_registration  # type: ignore[method-assign]
    driver.start()
    try:
        assert seen == [True]
    finally:
        driver.stop()


def test_stale_sockets_are_replaced_and_removed_on_stop(
    base_dir: Path, fake_claims: FakeClaimSource
) -> None:
    cfg = make_config(base_dir)
    for path in (cfg.dra_socket, cfg.registration_socket):
        path.parent.mkdir(parents=True, exist_ok=True)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()  # leaves the file, as a killed process would
    driver = Driver(cfg, fake_claims, Metrics(), publisher=None)
    driver.start()
    kubelet = KubeletClient(cfg.registration_socket)
    try:
        assert kubelet.register() == "v1.DRAPlugin"
    finally:
        kubelet.close()
        driver.stop()
    assert not cfg.dra_socket.exists()
    assert not cfg.registration_socket.exists()


def test_failed_registration_is_logged_and_service_goes_on(
    start_driver: StartDriver, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_driver(register=False)
    dra_target = f"unix:{running.cfg.dra_socket}"
    assert health_status(dra_target) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(dra_target, "registration") == health_pb2.HealthCheckResponse.NOT_SERVING
    with caplog.at_level(logging.ERROR):
        running.kubelet.notify(False, "endpoint already registered")
    assert any(
        r.levelno == logging.ERROR and getattr(r, "error", "") == "endpoint already registered"
        for r in caplog.records
    )
    assert running.kubelet.get_info().name == DRIVER
    running.kubelet.register()  # the kubelet retries; now it succeeds
    assert health_status(dra_target, "registration") == health_pb2.HealthCheckResponse.SERVING


def test_prepare_unprepare_flow(start_driver: StartDriver, fake_claims: FakeClaimSource) -> None:
    running = start_driver(file_count=2)
    claim = add(fake_claims, ["file2"], ["pod-a"])
    answer = running.kubelet.prepare([claim])
    (device,) = answer[claim.uid].devices
    assert answer[claim.uid].error == ""
    assert device.request_names == ("req0",)
    assert device.pool_name == NODE
    assert device.device_name == "file2"
    assert device.cdi_device_ids == (f"k8s.{DRIVER}/file={claim.uid}-file2",)
    assert device.share_id is None
    assert file_lines(running.cfg.file_dir / "file2") == ["pod-a"]

    assert running.kubelet.prepare([claim]) == answer  # repeated prepare
    unknown = Claim("ns", "gone", new_uid())
    assert running.kubelet.unprepare([claim, unknown]) == {claim.uid: "", unknown.uid: ""}
    assert file_lines(running.cfg.file_dir / "file2") == []
    assert_consistent(running.dirs, 2)


def test_v1_returns_share_id(start_driver: StartDriver, fake_claims: FakeClaimSource) -> None:
    running = start_driver(shared=True)
    uid = new_uid()
    claim = fake_claims.add(
        claim_object(
            namespace="ns",
            name="shared",
            uid=uid,
            results=[{**result("file1"), "shareID": "3e9c"}],
            pods=["pod-a"],
        )
    )
    (device,) = running.kubelet.prepare([claim])[uid].devices
    assert device.share_id == "3e9c"


def test_v1beta1_serves_the_same_flow(
    start_driver: StartDriver, fake_claims: FakeClaimSource
) -> None:
    running = start_driver(register=False, shared=True)
    assert running.kubelet.register(kubelet_supported=["v1beta1.DRAPlugin"]) == "v1beta1.DRAPlugin"
    claim = fake_claims.add(
        claim_object(
            namespace="ns",
            name="beta",
            uid=new_uid(),
            results=[{**result("file1", request="r/s"), "shareID": "3e9c"}],
            pods=["pod-b"],
        )
    )
    answer = running.kubelet.prepare([claim])[claim.uid]
    assert answer.error == ""
    (device,) = answer.devices
    assert (device.request_names, device.device_name, device.share_id) == (("r",), "file1", None)
    assert device.cdi_device_ids == (f"k8s.{DRIVER}/file={claim.uid}-file1",)
    assert file_lines(running.cfg.file_dir / "file1") == ["pod-b"]
    assert running.kubelet.unprepare([claim]) == {claim.uid: ""}
    assert file_lines(running.cfg.file_dir / "file1") == []


def test_empty_requests_get_empty_maps(start_driver: StartDriver) -> None:
    running = start_driver()
    assert running.kubelet.prepare([]) == {}
    assert running.kubelet.unprepare([]) == {}


def test_claim_without_uid_fails_the_whole_request(start_driver: StartDriver) -> None:
    running = start_driver()
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        request = dra_v1_pb2.NodePrepareResourcesRequest(
            claims=[dra_v1_pb2.Claim(namespace="ns", name="x", uid="")]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.NodePrepareResources(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no uid" in str(info.value.details())
    assert running.kubelet.prepare([]) == {}  # still serving


def test_unknown_service_is_unimplemented(start_driver: StartDriver) -> None:
    running = start_driver()
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        watch = channel.unary_stream(
            "/v1alpha1.DRAResourceHealth/NodeWatchResources",
            request_serializer=bytes,
            response_deserializer=bytes,
        )
        with pytest.raises(grpc.RpcError) as info:
            list(watch(b"", timeout=5))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_bad_inputs_get_per_claim_errors_and_nothing_is_written(
    start_driver: StartDriver, fake_claims: FakeClaimSource
) -> None:
    running = start_driver(file_count=2)
    good = add(fake_claims, ["file1"], ["pod-good"])
    assert running.kubelet.prepare([good])[good.uid].error == ""
    uid = new_uid()
    bad = {
        "missing": Claim("ns", "missing", new_uid()),
        "replaced": fake_claims.add(
            claim_object(namespace="ns", name="replaced", uid=new_uid(), results=[result("file2")])
        ),
        "unallocated": add(fake_claims, [], ["p"], allocated=False),
        "other driver": add(
            fake_claims, [], ["p"], results=[result("file2", driver="x.example.com")]
        ),
        "other node": add(fake_claims, [], ["p"], results=[result("file2", pool="node-b")]),
        "unknown device": add(fake_claims, ["file7"], ["p"]),
        "newline": add(fake_claims, ["file2"], ["pod\nx"]),
        "slash": add(fake_claims, ["file2"], ["a/b"]),
        "dotdot": add(fake_claims, ["file2"], [".."]),
        "too long": add(fake_claims, ["file2"], ["p" * 254]),
        "taken": add(fake_claims, ["file1"], ["p"]),
    }
    bad["replaced"] = Claim("ns", "replaced", uid)  # the kubelet knows an older UID
    expected = {
        "missing": "does not exist",
        "replaced": "was deleted and re-created",
        "unallocated": "is not allocated",
        "other driver": "no device allocated by driver file.dra.example.com",
        "other node": "belongs to another node",
        "unknown device": "device file7 is not a device of node",
        "newline": "not a valid Kubernetes name",
        "slash": "not a valid Kubernetes name",
        "dotdot": "not a valid Kubernetes name",
        "too long": "no more than 253 characters",
        "taken": "already prepared for claim",
    }
    answer = running.kubelet.prepare(list(bad.values()))
    for case, claim in bad.items():
        assert answer[claim.uid].devices == ()
        assert expected[case] in answer[claim.uid].error, case
    assert file_lines(running.cfg.file_dir / "file1") == ["pod-good"]
    assert file_lines(running.cfg.file_dir / "file2") == []
    assert [c.uid for c in assert_consistent(running.dirs, 2)] == [good.uid]
    assert running.kubelet.prepare([good])[good.uid].error == ""


def test_concurrent_grpc_calls_on_one_file_lose_no_line(
    start_driver: StartDriver, fake_claims: FakeClaimSource
) -> None:
    running = start_driver(shared=True)
    claims = [add(fake_claims, ["file1"], [f"pod-{i}"]) for i in range(60)]
    assert all(r.error == "" for r in running.kubelet.prepare(claims[:30]).values())
    failures: list[str] = []

    def prepare(claim: Claim) -> None:
        failures.extend(r.error for r in running.kubelet.prepare([claim]).values() if r.error)

    def unprepare(claim: Claim) -> None:
        failures.extend(e for e in running.kubelet.unprepare([claim]).values() if e)

    threads = [threading.Thread(target=prepare, args=(c,)) for c in claims[30:]]
    threads += [threading.Thread(target=unprepare, args=(c,)) for c in claims[:15]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    lines = file_lines(running.cfg.file_dir / "file1")
    assert sorted(lines) == sorted(f"pod-{i}" for i in range(15, 60))
    assert_consistent(running.dirs, 1)


def test_tcp_health_port_serves_only_health(start_driver: StartDriver) -> None:
    port = free_port()
    running = start_driver(health_port=port)
    target = f"127.0.0.1:{port}"
    assert health_status(target) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(target, "registration") == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(target) as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.NodePrepareResources(dra_v1_pb2.NodePrepareResourcesRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    running.driver.stop()
    with pytest.raises(grpc.RpcError):
        health_status(target)


def test_metrics_port_exposes_request_and_device_metrics(
    start_driver: StartDriver, fake_claims: FakeClaimSource
) -> None:
    port = free_port()
    running = start_driver(metrics_port=port)
    claim = add(fake_claims, ["file1"], ["pod-a"])
    running.kubelet.prepare([claim, Claim("ns", "missing", new_uid())])
    running.kubelet.unprepare([claim])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'dra_file_driver_requests_total{api="v1",method="NodePrepareResources"} 1.0' in text
    assert 'dra_file_driver_claim_errors_total{api="v1",method="NodePrepareResources"} 1.0' in text
    unprepare_count = "dra_file_driver_request_duration_seconds_count"
    assert f'{unprepare_count}{{api="v1",method="NodeUnprepareResources"}} 1.0' in text
    assert "dra_file_driver_published_devices 0.0" in text
    assert "dra_file_driver_prepared_claims 0.0" in text


def test_kubelet_client_rejects_a_plugin_it_cannot_use(start_driver: StartDriver) -> None:
    running: RunningDriver = start_driver(register=False)
    with pytest.raises(ProtocolError, match="none of services supported"):
        running.kubelet.register(kubelet_supported=["v1alpha4.Node"])
