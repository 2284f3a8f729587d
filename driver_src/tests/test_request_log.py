"""One log line per gRPC call, over real gRPC (request_log's interceptor)."""

from __future__ import annotations

import logging

import grpc
import pytest

from dra_file_driver import request_log
from dra_file_driver.kubeletapi import dra_v1_pb2, dra_v1_pb2_grpc

from .driver_testkit import FakeClaimSource, StartDriver, new_uid, wait_for
from .kubelet_client import Claim
from .test_grpc import add

PREPARE_METHOD = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
UNPREPARE_METHOD = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources"


def call_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == request_log.__name__]


def test_each_call_is_logged_with_id_method_claims_outcome_and_duration(
    start_driver: StartDriver, fake_claims: FakeClaimSource, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_driver()
    good = add(fake_claims, ["file1"], ["pod-a"])
    missing = Claim("ns", "missing", new_uid())
    caplog.set_level(logging.DEBUG, logger=request_log.__name__)

    assert running.kubelet.prepare([good])[good.uid].error == ""
    assert "does not exist" in running.kubelet.prepare([good, missing])[missing.uid].error
    assert running.kubelet.unprepare([good]) == {good.uid: ""}
    with grpc.insecure_channel(f"unix:{running.cfg.dra_socket}") as channel:
        stub = dra_v1_pb2_grpc.DRAPluginStub(channel)
        no_uid = dra_v1_pb2.NodePrepareResourcesRequest(
            claims=[dra_v1_pb2.Claim(namespace="ns", name="x", uid="")]
        )
        with pytest.raises(grpc.RpcError):
            stub.NodePrepareResources(no_uid, timeout=5)

    # An aborted call's answer can reach the client before its line is logged.
    wait_for(lambda: len(call_records(caplog)) == 4, 10, "the fourth call's log line")
    ok, claim_failed, unprepared, rejected = call_records(caplog)
    ids = [vars(r)["request_id"] for r in (ok, claim_failed, unprepared, rejected)]
    assert ids == sorted(set(ids))

    assert (ok.levelno, ok.getMessage()) == (logging.DEBUG, "request done")
    assert vars(ok)["method"] == PREPARE_METHOD
    assert vars(ok)["claims"] == [good.uid]
    assert vars(ok)["outcome"] == "OK"
    assert isinstance(vars(ok)["duration_ms"], float)
    assert vars(ok)["server"] == "dra"

    assert (claim_failed.levelno, claim_failed.getMessage()) == (logging.ERROR, "request failed")
    assert vars(claim_failed)["claims"] == [good.uid, missing.uid]
    assert vars(claim_failed)["outcome"] == "CLAIM_ERRORS"
    errors = vars(claim_failed)["claim_errors"]
    assert list(errors) == [missing.uid]
    assert "does not exist" in errors[missing.uid]

    assert unprepared.levelno == logging.DEBUG
    assert vars(unprepared)["method"] == UNPREPARE_METHOD
    assert vars(unprepared)["outcome"] == "OK"

    assert rejected.levelno == logging.ERROR
    assert vars(rejected)["outcome"] == "INVALID_ARGUMENT"
    assert "has no uid" in vars(rejected)["details"]


def test_registration_calls_are_logged_too(
    start_driver: StartDriver, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_driver(register=False)
    caplog.set_level(logging.DEBUG, logger=request_log.__name__)
    running.kubelet.get_info()
    (record,) = call_records(caplog)
    assert vars(record)["server"] == "registration"
    assert vars(record)["method"] == "/pluginregistration.Registration/GetInfo"
    assert vars(record)["outcome"] == "OK"


def test_a_flood_of_claims_is_logged_shortened(
    start_driver: StartDriver, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_driver()
    caplog.set_level(logging.DEBUG, logger=request_log.__name__)
    claims = [Claim("ns", f"c{i}", new_uid()) for i in range(50)]
    claims.append(Claim("ns", "long", "u" * 5000))
    running.kubelet.prepare(claims)
    (record,) = call_records(caplog)
    logged = vars(record)["claims"]
    assert len(logged) == request_log.MAX_LOGGED_CLAIMS + 1
    assert logged[-1] == f"... {len(claims) - request_log.MAX_LOGGED_CLAIMS} more"
    assert len(vars(record)["claim_errors"]) == request_log.MAX_LOGGED_CLAIMS
