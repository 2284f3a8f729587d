"""The DRA service when things hang: a wedged API server, stuck calls, a wedged lock.

Over real gRPC on Unix sockets, with the claim reads of chosen claims made to
hang the way reads from an unresponsive API server do. Every bound below is
a guard against a hang, not a timing: the assertions are about which calls
answer while others are still stuck.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from dra_file_driver import device_state, dra_service
from dra_file_driver.claims import ClaimError, ClaimRef
from dra_file_driver.kubeletapi import dra_v1_pb2, dra_v1_pb2_grpc

from .driver_testkit import FakeClaimSource, StartDriver, free_port, wait_for
from .kubelet_client import Claim
from .test_grpc import add, health_status
from .test_request_log import call_records

PREPARE_METHOD = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HangingClaimSource(FakeClaimSource):
    """FakeClaimSource whose reads of the claims named in `hanging` hang until released.

    Reads of the claims named in `broken` raise something unexpected.

    With honor_timeout they give up after the timeout they are passed, as
    the API client does; without, they hang regardless, like a client that
    ignores its timeout. Every read records the timeout it was given.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hanging: set[str] = set()
        self.broken: set[str] = set()
        self.honor_timeout = False
        self.release = threading.Event()
        self.timeouts: dict[str, float] = {}
        self._count_lock = threading.Lock()
        self.stuck = 0

    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        self.timeouts[ref.name] = timeout
        if ref.name in self.broken:
            raise RuntimeError("a bug, not a ClaimError")
        if ref.name in self.hanging:
            with self._count_lock:
                self.stuck += 1
            try:
                released = self.release.wait(timeout if self.honor_timeout else None)
            finally:
                with self._count_lock:
                    self.stuck -= 1
            if not released:
                raise ClaimError(f"cannot read claim {ref}: timed out after {timeout:.2f} s")
        return super().get(ref, timeout)


@pytest.fixture
def fake_claims() -> Iterator[HangingClaimSource]:
    """Overrides conftest's: start_driver then reads claims from this source."""
    source = HangingClaimSource()
    yield source
    source.release.set()


def request(*claims: Claim) -> dra_v1_pb2.NodePrepareResourcesRequest:
    return dra_v1_pb2.NodePrepareResourcesRequest(
        claims=[dra_v1_pb2.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]
    )


def test_hanging_read_is_answered_with_claim_errors_before_the_callers_deadline(
    start_driver: StartDriver, fake_claims: HangingClaimSource
) -> None:
    running = start_driver(file_count=2)
    ready = add(fake_claims, ["file1"], ["pod-a"])
    assert running.kubelet.prepare([ready])[ready.uid].error == ""
    stuck = add(fake_claims, ["file2"], ["pod-b"])
    fake_claims.hanging.add(stuck.name)
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        # A late answer would raise DEADLINE_EXCEEDED here.
        response = stub.NodePrepareResources(request(ready, stuck), timeout=3)
    assert fake_claims.stuck == 1  # still hanging: the answer did not wait for it
    assert set(response.claims) == {ready.uid, stuck.uid}
    # The read ignores its timeout, so the whole call is given up on: every
    # claim of it gets the error, and the kubelet retries them all.
    for uid in (ready.uid, stuck.uid):
        assert "not done within 2.7 s" in response.claims[uid].error
        assert list(response.claims[uid].devices) == []

    fake_claims.release.set()
    wait_for(lambda: fake_claims.stuck == 0, 10, "the released read to return")
    answer = running.kubelet.prepare([ready, stuck])  # the kubelet's retry
    assert [answer[c.uid].error for c in (ready, stuck)] == ["", ""]


def test_reads_get_the_time_the_caller_left(
    start_driver: StartDriver, fake_claims: HangingClaimSource
) -> None:
    running = start_driver(file_count=2)
    ready = add(fake_claims, ["file1"], ["pod-a"])
    assert running.kubelet.prepare([ready])[ready.uid].error == ""
    stuck = add(fake_claims, ["file2"], ["pod-b"])
    fake_claims.hanging.add(stuck.name)
    fake_claims.honor_timeout = True
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        response = stub.NodePrepareResources(request(ready, stuck), timeout=3)
    # This time the read gives up by itself, and the other claim is answered.
    assert response.claims[ready.uid].error == ""
    assert [d.device_name for d in response.claims[ready.uid].devices] == ["file1"]
    assert "timed out after" in response.claims[stuck.uid].error
    share = dra_service.ANSWER_SHARE * dra_service.READ_SHARE
    # (+0.1: gRPC rounds the deadline it sends up.)
    assert 0 < fake_claims.timeouts[stuck.name] <= (3 + 0.1) * share

    # Without a deadline, or with the kubelet's 45 s, the driver's cap applies.
    fake_claims.hanging.clear()
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        for timeout in (None, 45.0):
            claim = add(fake_claims, ["file2"], ["pod-c"])
            response = stub.NodePrepareResources(request(claim), timeout=timeout)
            assert response.claims[claim.uid].error == ""
            cap = dra_service.MAX_ANSWER_SECONDS * dra_service.READ_SHARE
            assert cap - 5 < fake_claims.timeouts[claim.name] <= cap
            assert running.kubelet.unprepare([claim]) == {claim.uid: ""}


def _half_sent_call(
    channel: grpc.Channel, gate: threading.Event
) -> grpc.Future[dra_v1_pb2.NodePrepareResourcesResponse]:
    """A prepare call whose request message is never sent (until gate is set)."""

    def no_message() -> Iterator[bytes]:
        gate.wait()
        yield from ()

    call = channel.stream_unary(
        PREPARE_METHOD,
        request_serializer=lambda b: b,
        response_deserializer=dra_v1_pb2.NodePrepareResourcesResponse.FromString,
    )
    future: grpc.Future[dra_v1_pb2.NodePrepareResourcesResponse] = call.future(
        no_message(), timeout=60
    )
    return future


def test_stuck_calls_do_not_starve_other_calls(
    start_driver: StartDriver, fake_claims: HangingClaimSource
) -> None:
    port = free_port()
    running = start_driver(health_port=port, file_count=2, shared=True)
    prepared = add(fake_claims, ["file1"], ["pod-a"])
    leaving = add(fake_claims, ["file2"], ["pod-b"])
    assert running.kubelet.prepare([prepared, leaving])[prepared.uid].error == ""
    wedged = 40  # more than the 32 worker threads the driver once had
    stuck = [add(fake_claims, ["file1"], [f"pod-s{i}"]) for i in range(wedged)]
    fake_claims.hanging.update(c.name for c in stuck)
    gate = threading.Event()
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        try:
            half_sent = [_half_sent_call(channel, gate) for _ in range(wedged)]
            stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
            stuck_calls = [stub.NodePrepareResources.future(request(c), timeout=60) for c in stuck]
            wait_for(lambda: fake_claims.stuck == wedged, 20, f"{wedged} reads to hang")

            assert running.kubelet.prepare([prepared])[prepared.uid].error == ""
            assert running.kubelet.unprepare([leaving]) == {leaving.uid: ""}
            assert health_status(f"unix:{running.cfg.dra_socket}") == SERVING
            assert health_status(f"127.0.0.1:{port}") == SERVING  # GetInfo + empty prepare

            assert fake_claims.stuck == wedged
            assert not any(call.done() for call in [*half_sent, *stuck_calls])
            fake_claims.release.set()
            for claim, call in zip(stuck, stuck_calls, strict=True):
                assert call.result(timeout=30).claims[claim.uid].error == ""
        finally:
            fake_claims.release.set()
            gate.set()
            for call in half_sent:
                call.cancel()


def test_liveness_fails_while_the_state_lock_is_wedged(start_driver: StartDriver) -> None:
    port = free_port()
    running = start_driver(health_port=port)
    target = f"127.0.0.1:{port}"
    assert health_status(target) == SERVING
    assert health_status(target, "liveness") == SERVING

    # Another process (say, a second driver instance) holds the state lock.
    fd = os.open(running.cfg.plugin_dir / device_state.LOCK_FILE_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert health_status(target) == NOT_SERVING
        assert health_status(target, "liveness") == NOT_SERVING
        assert health_status(target, "registration") == SERVING  # readiness is another matter
        with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
            stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.NodePrepareResources(dra_v1_pb2.NodePrepareResourcesRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "lock could not be taken" in str(info.value.details())
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert health_status(target) == SERVING
    assert running.kubelet.prepare([]) == {}


def test_liveness_fails_when_the_registration_socket_does_not_answer(
    start_driver: StartDriver,
) -> None:
    port = free_port()
    running = start_driver(health_port=port)
    target = f"127.0.0.1:{port}"
    assert health_status(target) == SERVING
    running.driver.registration_server.stop(0)
    assert health_status(target) == NOT_SERVING
    assert health_status(target, "registration") == SERVING  # the stored status


def test_wedged_lock_gets_answers_with_claim_errors_before_the_deadline(
    start_driver: StartDriver, fake_claims: HangingClaimSource
) -> None:
    running = start_driver(file_count=2)
    prepared = add(fake_claims, ["file1"], ["pod-a"])
    assert running.kubelet.prepare([prepared])[prepared.uid].error == ""
    new = add(fake_claims, ["file2"], ["pod-b"])
    fd = os.open(running.cfg.plugin_dir / device_state.LOCK_FILE_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
            stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
            prepared_answer = stub.NodePrepareResources(request(new), timeout=2)
            unprepare = dra_v1_pb2.NodeUnprepareResourcesRequest(claims=request(prepared).claims)
            unprepared_answer = stub.NodeUnprepareResources(unprepare, timeout=2)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert "not done within 1.8 s" in prepared_answer.claims[new.uid].error
    assert "not done within 1.8 s" in unprepared_answer.claims[prepared.uid].error
    # Both changes go through once the lock is free; the retries see them done.
    assert running.kubelet.unprepare([prepared]) == {prepared.uid: ""}
    assert running.kubelet.prepare([new])[new.uid].error == ""


def test_unexpected_failure_is_a_claim_error_not_unknown(
    start_driver: StartDriver, fake_claims: HangingClaimSource, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_driver()
    claim = add(fake_claims, ["file1"], ["pod-a"])
    fake_claims.broken.add(claim.name)
    with caplog.at_level(logging.ERROR):
        answer = running.kubelet.prepare([claim])[claim.uid]
    assert answer.error == dra_service.INTERNAL_ERROR
    # Logged with its traceback, and the request id of the call's own line.
    (failure,) = [r for r in caplog.records if r.exc_info]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], RuntimeError)
    wait_for(lambda: len(call_records(caplog)) == 1, 10, "the call's log line")
    assert vars(failure)["request_id"] == vars(call_records(caplog)[0])["request_id"]
    fake_claims.broken.clear()
    assert running.kubelet.prepare([claim])[claim.uid].error == ""
