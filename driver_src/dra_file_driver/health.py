"""gRPC health checking (grpc.health.v1.Health) for probes.

The overall status ("") turns SERVING once the DRA and registration sockets
are up. The "registration" service stays NOT_SERVING until the kubelet has
confirmed the registration, so a readiness probe can wait for that.

Kubelet gRPC probes connect to a TCP port on the pod IP, while the DRA service
must only ever be reachable through its Unix socket. The TCP port is
therefore served by a separate gRPC server that carries nothing but health.

A liveness probe must see a driver that answers its sockets but can no longer
do its work, so on the TCP port a check of the overall status (or of
"liveness") also exercises the service the way the kubelet uses it, as
dra-example-driver's health check does: GetInfo on the registration socket,
then an empty NodePrepareResources on the DRA socket, which fails unless the
node state's lock can be taken (see dra_service). Any failure answers
NOT_SERVING, and the kubelet restarts the container after failureThreshold of
them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Public as grpc_health.v1.health.aio, a name the type stubs lack.
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer

from . import event_loop
from .kubeletapi import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)

log = logging.getLogger(__name__)

OVERALL = ""
REGISTRATION = "registration"
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Bound on each call of the liveness check when the probe sets no deadline
# (a kubelet probe's deadline is its timeoutSeconds, by default 1 s).
LIVENESS_CALL_SECONDS = 1.0

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Health:
    def __init__(self) -> None:
        self._loop = event_loop.shared()
        self.servicer = AsyncHealthServicer()
        self._set(OVERALL, NOT_SERVING)
        self._set(REGISTRATION, NOT_SERVING)

    def add_to(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def set_serving(self) -> None:
        self._set(OVERALL, SERVING)

    def set_registered(self, registered: bool) -> None:
        self._set(REGISTRATION, SERVING if registered else NOT_SERVING)

    def shutdown(self) -> None:
        """Report NOT_SERVING everywhere (and to watchers) before the servers stop."""
        self._loop.run(self.servicer.enter_graceful_shutdown())

    def serve_tcp(
        self, port: int, *, registration_socket: Path, dra_socket: Path
    ) -> TcpHealthServer:
        """Start the health-only gRPC server on port (all interfaces)."""
        server = TcpHealthServer(self, port, registration_socket, dra_socket)
        log.info("health service listening", extra={"port": port})
        return server

    def _set(self, service: str, status: int) -> None:
        self._loop.run(self.servicer.set(service, status))


class TcpHealthServer:
    def __init__(
        self, health: Health, port: int, registration_socket: Path, dra_socket: Path
    ) -> None:
        self._loop = event_loop.shared()
        self._server, self._liveness = self._loop.run(
            _start_tcp(health.servicer, port, registration_socket, dra_socket)
        )

    def stop(self, grace: float) -> None:
        self._loop.run(self._stop(grace))

    async def _stop(self, grace: float) -> None:
        await self._server.stop(grace)
        await self._liveness.close()


async def _start_tcp(
    status: AsyncHealthServicer, port: int, registration_socket: Path, dra_socket: Path
) -> tuple[grpc.aio.Server, LivenessServicer]:
    # grpc.aio servers and channels bind to the running loop: made on it.
    liveness = LivenessServicer(status, registration_socket, dra_socket)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(liveness, server)
    server.add_insecure_port(f"[::]:{port}")
    await server.start()
    return server, liveness


# The generated base class (untyped) answers UNIMPLEMENTED for List.
class LivenessServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """The stored statuses, plus a check of the service for OVERALL and LIVENESS."""

    def __init__(
        self, status: AsyncHealthServicer, registration_socket: Path, dra_socket: Path
    ) -> None:
        self._status = status
        self._registration_socket = registration_socket
        self._dra_socket = dra_socket
        self._registration_channel = grpc.aio.insecure_channel(f"unix:{registration_socket}")
        self._dra_channel = grpc.aio.insecure_channel(f"unix:{dra_socket}")

    async def close(self) -> None:
        await self._registration_channel.close(None)
        await self._dra_channel.close(None)

    async def Check(  # noqa: N802 - gRPC method name
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in (OVERALL, LIVENESS):
            response: health_pb2.HealthCheckResponse = await self._status.Check(request, context)
            return response
        overall = health_pb2.HealthCheckRequest(service=OVERALL)
        response = await self._status.Check(overall, context)
        if response.status != SERVING:
            return response
        problem = await self._exercise(context)
        if problem:
            log.error("liveness check failed", extra={"problem": problem})
            return health_pb2.HealthCheckResponse(status=NOT_SERVING)
        return response

    async def Watch(  # noqa: N802 - gRPC method name
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> None:
        await self._status.Watch(request, context)

    async def _exercise(self, context: Context) -> str | None:
        """Why the driver's services do not work, or None if they do."""
        remaining = context.time_remaining()
        timeout = LIVENESS_CALL_SECONDS
        if remaining is not None:
            # Two calls in the probe's time, and a little left to answer it.
            timeout = max(min(timeout, remaining * 0.45), 0.0)
        registration = pluginregistration_v1_pb2_grpc.RegistrationStub(self._registration_channel)
        dra = dra_v1_pb2_grpc.DRAPluginStub(self._dra_channel)
        try:
            await registration.GetInfo(pluginregistration_v1_pb2.InfoRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return f"GetInfo on {self._registration_socket}: {exc.code().name}: {exc.details()}"
        try:
            await dra.NodePrepareResources(
                dra_v1_pb2.NodePrepareResourcesRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            return (
                f"empty NodePrepareResources on {self._dra_socket}: "
                f"{exc.code().name}: {exc.details()}"
            )
        return None
