"""Fuzzed requests over real gRPC: every claim gets an answer, no call gets UNKNOWN.

The requests are seeded random mixes of real claims, mutated claims, empty,
odd and huge strings, duplicates, and random bytes that happen to parse as a
request. The one request-level error the service documents is a claim
without a UID (INVALID_ARGUMENT); anything else must be answered per claim,
and the driver must go on serving with its node state consistent.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from dra_file_driver.kubeletapi import dra_v1_pb2, dra_v1beta1_pb2

from .driver_testkit import FakeClaimSource, StartDriver, assert_consistent, claim_object, result
from .kubelet_client import Claim
from .test_grpc import health_status

SEED = 13
ROUNDS = 400
FILE_COUNT = 3


@dataclass(frozen=True)
class Method:
    path: str
    request: Any  # the request message class
    response: Any
    prepare: bool


def methods() -> list[Method]:
    found = []
    for version, pb in (("v1", dra_v1_pb2), ("v1beta1", dra_v1beta1_pb2)):
        service = f"/k8s.io.kubelet.pkg.apis.dra.{version}.DRAPlugin"
        found += [
            Method(
                f"{service}/NodePrepareResources",
                pb.NodePrepareResourcesRequest,
                pb.NodePrepareResourcesResponse,
                prepare=True,
            ),
            Method(
                f"{service}/NodeUnprepareResources",
                pb.NodeUnprepareResourcesRequest,
                pb.NodeUnprepareResourcesResponse,
                prepare=False,
            ),
        ]
    return found


def random_text(rng: random.Random, known: list[Claim]) -> str:  # noqa: PLR0911
    kind = rng.randrange(9)
    if kind == 0:
        return ""
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randint(1, 40)))
    if kind == 2:  # any Unicode scalar value (surrogates cannot be encoded)
        return "".join(
            chr(rng.choice([rng.randrange(0, 0xD800), rng.randrange(0xE000, 0x110000)]))
            for _ in range(rng.randint(1, 20))
        )
    if kind == 3:
        return rng.choice("xé/") * rng.randint(10_000, 200_000)
    if kind == 4:
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if kind == 5:
        return rng.choice(["..", ".", "a/b", "pod\nx", "\x00", " ", "-", "A" * 254])
    claim = rng.choice(known)
    return rng.choice([claim.namespace, claim.name, claim.uid])


def random_request(rng: random.Random, method: Method, known: list[Claim]) -> bytes:
    claims: list[Any] = []
    for _ in range(rng.randint(0, 6)):
        if claims and rng.random() < 0.2:
            claims.append(rng.choice(claims))  # duplicate
            continue
        real = rng.choice(known)
        fields = {"namespace": real.namespace, "name": real.name, "uid": real.uid}
        for key in fields:
            if rng.random() < 0.4:
                fields[key] = random_text(rng, known)
        claims.append(fields)
    message = method.request()
    for fields in claims:
        message.claims.add(**fields)
    data: bytes = message.SerializeToString()
    if rng.random() < 0.3:  # flip bytes; keep the result only if it still parses
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if _parses(method, bytes(mutated)):
            data = bytes(mutated)
    return data


def random_bytes_that_parse(rng: random.Random, method: Method) -> bytes:
    while True:
        data = rng.randbytes(rng.randint(0, 64))
        if _parses(method, data):
            return data


def _parses(method: Method, data: bytes) -> bool:
    try:
        method.request.FromString(data)
    except Exception:
        return False
    return True


def check_answer(channel: grpc.Channel, method: Method, data: bytes) -> str:
    """Send data as method's request; fail unless answered as the service promises.

    Returns what kind of answer it was, so the test can tell what it covered.
    """
    call = channel.unary_unary(
        method.path,
        request_serializer=lambda b: b,
        response_deserializer=method.response.FromString,
    )
    uids = [c.uid for c in method.request.FromString(data).claims]
    if "" in uids:  # the one request-level error
        with pytest.raises(grpc.RpcError) as info:
            call(data, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        return "request error"
    response = call(data, timeout=30)
    assert set(response.claims) == set(uids)
    for uid in uids:
        entry = response.claims[uid]
        if method.prepare:
            assert bool(entry.error) != bool(entry.devices), (uid, entry)
    if not uids:
        return "empty"
    if any(response.claims[uid].error for uid in uids):
        return "claim errors"
    return "success"


@pytest.mark.timeout(300)
def test_fuzzed_requests_get_answers_never_unknown(
    start_driver: StartDriver, fake_claims: FakeClaimSource
) -> None:
    running = start_driver(file_count=FILE_COUNT)
    known = [
        fake_claims.add(
            claim_object(
                namespace="ns",
                name=f"claim-{i}",
                uid=str(uuid.uuid4()),
                results=[result(f"file{i % FILE_COUNT + 1}")],
                pods=[f"pod-{i}"],
            )
        )
        for i in range(5)
    ]
    rng = random.Random(SEED)  # noqa: S311 - reproducible, not secret
    all_methods = methods()
    target = f"unix:{running.cfg.dra_socket}"
    kinds: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        for _ in range(ROUNDS):
            method = rng.choice(all_methods)
            if rng.random() < 0.2:
                data = random_bytes_that_parse(rng, method)
            else:
                data = random_request(rng, method, known)
            kinds[check_answer(channel, method, data)] += 1
        assert set(kinds) == {"request error", "empty", "claim errors", "success"}, kinds

        # Bytes that do not parse fail the request, as the caller's fault.
        for method in all_methods:
            garbage = b"\x0a\x05\xff\xfe"
            assert not _parses(method, garbage)
            call = channel.unary_unary(
                method.path,
                request_serializer=lambda b: b,
                response_deserializer=method.response.FromString,
            )
            with pytest.raises(grpc.RpcError) as info:
                call(garbage, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "does not parse" in str(info.value.details())

    # Still serving, and the node state is what the checkpoint says.
    assert health_status(target) == health_pb2.HealthCheckResponse.SERVING
    answer = running.kubelet.prepare(known)
    assert all(a.error == "" or "already prepared" in a.error for a in answer.values())
    assert running.kubelet.unprepare(known) == {c.uid: "" for c in known}
    assert assert_consistent(running.dirs, FILE_COUNT) == []
