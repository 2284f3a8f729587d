"""The kubelet's DRAPlugin service, in API versions v1 and v1beta1.

Both versions carry the same requests; v1beta1 only lacks Device.share_id.
One version-independent core does the work, and a thin servicer per version
converts messages, the way the kubelet itself serves v1beta1 by conversion.

Errors: a problem with one claim goes into that claim's ``error`` field (the
kubelet fails that pod's preparation and retries later, while other claims
in the request proceed). That includes claims the driver could not answer
in time and unexpected failures inside the driver, so a request is never
answered UNKNOWN. A gRPC error is only used when the request as a whole
cannot be answered:

* INVALID_ARGUMENT: a claim without a UID, because the response is keyed by
  UID and such a claim could get no entry;
* UNAVAILABLE: an empty NodePrepareResources (the liveness check sends one,
  as dra-example-driver's does) when the node state's lock cannot be taken
  within PROBE_LOCK_SECONDS: every prepare and unprepare would wait on it.

Time: the kubelet gives each call 45 s (defaultClientCallTimeout) and sends
that as the call's deadline. The driver answers within ANSWER_SHARE of the
time the caller left it, and at most MAX_ANSWER_SECONDS (also the bound when
a caller sets no deadline). Claim reads get READ_SHARE of that; the rest is
for the commit. Whatever is not done by then is answered with an error, so a
hanging API server or a wedged lock never makes an answer late.

Threads: requests arrive on the event loop (grpc.aio), so calls that never
finish sending their request hold no thread. The blocking work of a call
(the device state: lock, API reads, file writes) runs on a pool of up to
WORKERS threads, created as needed. A call stuck on a slow API server holds
one thread until its deadline, and the kubelet runs at most one call per pod
at a time, so a pool larger than the kubelet's default pod limit (110) means
a repeat prepare, an unprepare or a health check never waits behind stuck
calls for a thread. A bounded semaphore on API reads was the alternative, but
a call cannot know it needs a read before it looks at the checkpoint, and
waiting for such a semaphore would hold a thread just the same. Liveness
probes of the state lock have a thread of their own, so a full pool cannot
make them fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc

from . import cdi
from .claims import ClaimRef
from .device_state import DeviceState, PrepareOutcome
from .kubeletapi import dra_v1_pb2, dra_v1beta1_pb2
from .metrics import Metrics
from .prepared import PreparedClaim
from .request_log import current_request_id

log = logging.getLogger(__name__)

PREPARE = "NodePrepareResources"
UNPREPARE = "NodeUnprepareResources"

MAX_ANSWER_SECONDS = 40.0
ANSWER_SHARE = 0.9
READ_SHARE = 0.8
WORKERS = 128
PROBE_LOCK_SECONDS = 0.5
# Errors are for people reading events; a claim's name can be long.
MAX_ERROR_CHARS = 2000
INTERNAL_ERROR = "internal error in the driver (see its log); the kubelet retries"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
T = TypeVar("T")


class ClaimMessage(Protocol):
    """The Claim message of either API version."""

    @property
    def namespace(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class _Deadlines:
    seconds: float  # the time this call may take
    answer_by: float  # time.monotonic() values
    read_by: float

    @classmethod
    def of(cls, context: Context) -> _Deadlines:
        remaining = context.time_remaining()
        seconds = MAX_ANSWER_SECONDS
        if remaining is not None:
            seconds = min(seconds, max(remaining, 0.0) * ANSWER_SHARE)
        now = time.monotonic()
        return cls(seconds, now + seconds, now + seconds * READ_SHARE)

    def late(self) -> str:
        return (
            f"not done within {self.seconds:.1f} s, the time this call had: the API "
            "server or the node's state lock is slow; the kubelet retries"
        )


class DraCore:
    def __init__(
        self, state: DeviceState, driver_name: str, metrics: Metrics, *, workers: int = WORKERS
    ) -> None:
        self._state = state
        self._driver_name = driver_name
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dra-state")
        self._probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dra-probe")

    def close(self) -> None:
        """Stop taking work; calls still running finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    async def prepare(
        self, claims: Sequence[ClaimMessage], context: Context, api: str
    ) -> dict[str, PrepareOutcome]:
        with self._observe(PREPARE, api):
            refs = await _claim_refs(claims, context)
            if not refs:
                await self._probe(context)
                return {}
            deadlines = _Deadlines.of(context)
            outcomes, failure = await self._run(
                deadlines, self._state.prepare, refs, deadlines.read_by
            )
            answers = {
                uid: dataclasses.replace(outcome, error=_capped(outcome.error))
                for uid, outcome in outcomes.items()
            }
            for uid in _uids(refs) - answers.keys():
                answers[uid] = PrepareOutcome(error=failure or INTERNAL_ERROR)
            self._count_claim_errors(PREPARE, api, [o.error for o in answers.values()])
            return answers

    async def unprepare(
        self, claims: Sequence[ClaimMessage], context: Context, api: str
    ) -> dict[str, str]:
        with self._observe(UNPREPARE, api):
            refs = await _claim_refs(claims, context)
            if not refs:
                return {}
            deadlines = _Deadlines.of(context)
            errors, failure = await self._run(deadlines, self._state.unprepare, refs)
            answers = {uid: _capped(error) for uid, error in errors.items()}
            for uid in _uids(refs) - answers.keys():
                answers[uid] = failure or INTERNAL_ERROR
            self._count_claim_errors(UNPREPARE, api, list(answers.values()))
            return answers

    def cdi_device_ids(self, claim_uid: str, device: str) -> list[str]:
        return [cdi.qualified_device_id(self._driver_name, claim_uid, device)]

    async def _run(
        self, deadlines: _Deadlines, work: Callable[..., dict[str, T]], *args: object
    ) -> tuple[dict[str, T], str]:
        """work(*args) on the pool, by deadlines.answer_by.

        Returns work's answers, and the error for every claim it did not
        answer: work that is not done in time goes on, but its answer is
        dropped (prepare and unprepare are idempotent, so the kubelet's retry
        gets it); work that has not started by then never runs.
        """
        future = asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        try:
            async with asyncio.timeout(deadlines.answer_by - time.monotonic()):
                return await future, ""
        except TimeoutError:
            log.error(
                "call not done in time",
                extra={"request_id": current_request_id(), "seconds": deadlines.seconds},
            )
            return {}, deadlines.late()
        except Exception:
            log.exception("device state failed", extra={"request_id": current_request_id()})
            return {}, INTERNAL_ERROR

    async def _probe(self, context: Context) -> None:
        """Abort with UNAVAILABLE unless the state lock can be taken soon."""
        remaining = context.time_remaining()
        timeout = PROBE_LOCK_SECONDS
        if remaining is not None:
            timeout = min(timeout, remaining / 2)
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._probe_pool, self._state.probe, timeout):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the node state's lock could not be taken within {timeout:.2f} s",
            )

    @contextmanager
    def _observe(self, method: str, api: str) -> Iterator[None]:
        self._metrics.requests.labels(method, api).inc()
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self._metrics.request_errors.labels(method, api).inc()
            raise
        finally:
            self._metrics.latency.labels(method, api).observe(time.perf_counter() - start)

    def _count_claim_errors(self, method: str, api: str, errors: Sequence[str]) -> None:
        # Each failed claim is logged with its request (request_log).
        failed = sum(1 for error in errors if error)
        if failed:
            self._metrics.claim_errors.labels(method, api).inc(failed)


async def _claim_refs(claims: Sequence[ClaimMessage], context: Context) -> list[ClaimRef]:
    for index, claim in enumerate(claims):
        if not claim.uid:
            # Status details travel in a header, which clients cap at 8 KiB.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"claims[{index}] ({_capped(claim.namespace, 100)}/{_capped(claim.name, 100)}) "
                "has no uid; the response is keyed by claim UID",
            )
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


def _uids(refs: Sequence[ClaimRef]) -> set[str]:
    return {ref.uid for ref in refs}


def _capped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


DeviceT = TypeVar("DeviceT", dra_v1_pb2.Device, dra_v1beta1_pb2.Device)


def _device_messages(
    core: DraCore, claim: PreparedClaim, make: Callable[..., DeviceT], with_share_id: bool
) -> list[DeviceT]:
    devices = []
    for d in claim.devices:
        fields: dict[str, object] = {
            "request_names": [d.request],
            "pool_name": d.pool,
            "device_name": d.device,
            "cdi_device_ids": core.cdi_device_ids(claim.uid, d.device),
        }
        if with_share_id and d.share_id is not None:
            fields["share_id"] = d.share_id
        devices.append(make(**fields))
    return devices


class DraPluginV1:
    """k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"""

    def __init__(self, core: DraCore) -> None:
        self._core = core

    async def NodePrepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1_pb2.NodePrepareResourcesRequest, context: Context
    ) -> dra_v1_pb2.NodePrepareResourcesResponse:
        response = dra_v1_pb2.NodePrepareResourcesResponse()
        for uid, outcome in (await self._core.prepare(request.claims, context, "v1")).items():
            entry = response.claims[uid]
            if outcome.claim is None:
                entry.error = outcome.error
            else:
                entry.devices.extend(
                    _device_messages(self._core, outcome.claim, dra_v1_pb2.Device, True)
                )
        return response

    async def NodeUnprepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1_pb2.NodeUnprepareResourcesRequest, context: Context
    ) -> dra_v1_pb2.NodeUnprepareResourcesResponse:
        response = dra_v1_pb2.NodeUnprepareResourcesResponse()
        for uid, error in (await self._core.unprepare(request.claims, context, "v1")).items():
            response.claims[uid].error = error
        return response


class DraPluginV1beta1:
    """k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin (no share_id)"""

    def __init__(self, core: DraCore) -> None:
        self._core = core

    async def NodePrepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1beta1_pb2.NodePrepareResourcesRequest, context: Context
    ) -> dra_v1beta1_pb2.NodePrepareResourcesResponse:
        response = dra_v1beta1_pb2.NodePrepareResourcesResponse()
        outcomes = await self._core.prepare(request.claims, context, "v1beta1")
        for uid, outcome in outcomes.items():
            entry = response.claims[uid]
            if outcome.claim is None:
                entry.error = outcome.error
            else:
                entry.devices.extend(
                    _device_messages(self._core, outcome.claim, dra_v1beta1_pb2.Device, False)
                )
        return response

    async def NodeUnprepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1beta1_pb2.NodeUnprepareResourcesRequest, context: Context
    ) -> dra_v1beta1_pb2.NodeUnprepareResourcesResponse:
        response = dra_v1beta1_pb2.NodeUnprepareResourcesResponse()
        for uid, error in (await self._core.unprepare(request.claims, context, "v1beta1")).items():
            response.claims[uid].error = error
        return response
