"""The kubelet's DRAPlugin service, in API versions v1 and v1beta1.

Both versions carry the same requests; v1beta1 only lacks Device.share_id.
One version-independent core does the work, and a thin servicer per version
converts messages, the way the kubelet itself serves v1beta1 by conversion.

Errors: a problem with one claim goes into that claim's ``error`` field (the
kubelet fails that pod's preparation and retries later, while other claims
in the request proceed). A gRPC error is only used when the request as a
whole cannot be answered: a claim without a UID, because the response is
keyed by UID and such a claim could get no entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeVar

import grpc

from . import cdi
from .claims import ClaimRef
from .device_state import DeviceState, PrepareOutcome
from .kubeletapi import dra_v1_pb2, dra_v1beta1_pb2
from .metrics import Metrics
from .prepared import PreparedClaim

log = logging.getLogger(__name__)

PREPARE = "NodePrepareResources"
UNPREPARE = "NodeUnprepareResources"


class ClaimMessage(Protocol):
    """The Claim message of either API version."""

    @property
    def namespace(self) -> str: ...
    @property
    def uid(self) -> str: ...
    @property
    def name(self) -> str: ...


class DraCore:
    def __init__(self, state: DeviceState, driver_name: str, metrics: Metrics) -> None:
        self._state = state
        self._driver_name = driver_name
        self._metrics = metrics

    def prepare(
        self, claims: Sequence[ClaimMessage], context: grpc.ServicerContext, api: str
    ) -> dict[str, PrepareOutcome]:
        with self._observe(PREPARE, api):
            refs = _claim_refs(claims, context)
            outcomes = self._state.prepare(refs)
            self._count_claim_errors(PREPARE, api, [o.error for o in outcomes.values()])
            return outcomes

    def unprepare(
        self, claims: Sequence[ClaimMessage], context: grpc.ServicerContext, api: str
    ) -> dict[str, str]:
        with self._observe(UNPREPARE, api):
            refs = _claim_refs(claims, context)
            errors = self._state.unprepare(refs)
            self._count_claim_errors(UNPREPARE, api, list(errors.values()))
            return errors

    def cdi_device_ids(self, claim_uid: str, device: str) -> list[str]:
        return [cdi.qualified_device_id(self._driver_name, claim_uid, device)]

    @contextmanager
    def _observe(self, method: str, api: str) -> Iterator[None]:
        self._metrics.requests.labels(method, api).inc()
        start = time.perf_counter()
        try:
            yield
        except Exception:
            self._metrics.request_errors.labels(method, api).inc()
            raise
        finally:
            self._metrics.latency.labels(method, api).observe(time.perf_counter() - start)

    def _count_claim_errors(self, method: str, api: str, errors: Sequence[str]) -> None:
        for error in errors:
            if error:
                self._metrics.claim_errors.labels(method, api).inc()
                log.warning("claim failed", extra={"method": method, "error": error})


def _claim_refs(claims: Sequence[ClaimMessage], context: grpc.ServicerContext) -> list[ClaimRef]:
    for index, claim in enumerate(claims):
        if not claim.uid:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"claims[{index}] ({claim.namespace}/{claim.name}) has no uid; "
                "the response is keyed by claim UID",
            )
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


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

    def NodePrepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1_pb2.NodePrepareResourcesRequest, context: grpc.ServicerContext
    ) -> dra_v1_pb2.NodePrepareResourcesResponse:
        response = dra_v1_pb2.NodePrepareResourcesResponse()
        for uid, outcome in self._core.prepare(request.claims, context, "v1").items():
            entry = response.claims[uid]
            if outcome.claim is None:
                entry.error = outcome.error
            else:
                entry.devices.extend(
                    _device_messages(self._core, outcome.claim, dra_v1_pb2.Device, True)
                )
        return response

    def NodeUnprepareResources(  # noqa: N802 - gRPC method name
        self, request: dra_v1_pb2.NodeUnprepareResourcesRequest, context: grpc.ServicerContext
    ) -> dra_v1_pb2.NodeUnprepareResourcesResponse:
        response = dra_v1_pb2.NodeUnprepareResourcesResponse()
        for uid, error in self._core.unprepare(request.claims, context, "v1").items():
            response.claims[uid].error = error
        return response


class DraPluginV1beta1:
    """k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin (no share_id)"""

    def __init__(self, core: DraCore) -> None:
        self._core = core

    def NodePrepareResources(  # noqa: N802 - gRPC method name
        self,
        request: dra_v1beta1_pb2.NodePrepareResourcesRequest,
        context: grpc.ServicerContext,
    ) -> dra_v1beta1_pb2.NodePrepareResourcesResponse:
        response = dra_v1beta1_pb2.NodePrepareResourcesResponse()
        for uid, outcome in self._core.prepare(request.claims, context, "v1beta1").items():
            entry = response.claims[uid]
            if outcome.claim is None:
                entry.error = outcome.error
            else:
                entry.devices.extend(
                    _device_messages(self._core, outcome.claim, dra_v1beta1_pb2.Device, False)
                )
        return response

    def NodeUnprepareResources(  # noqa: N802 - gRPC method name
        self,
        request: dra_v1beta1_pb2.NodeUnprepareResourcesRequest,
        context: grpc.ServicerContext,
    ) -> dra_v1beta1_pb2.NodeUnprepareResourcesResponse:
        response = dra_v1beta1_pb2.NodeUnprepareResourcesResponse()
        for uid, error in self._core.unprepare(request.claims, context, "v1beta1").items():
            response.claims[uid].error = error
        return response
