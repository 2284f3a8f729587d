"""gRPC health checking (grpc.health.v1.Health) for probes.

The overall status ("") turns SERVING once the DRA and registration sockets
are up. The "registration" service stays NOT_SERVING until the kubelet has
confirmed the registration, so a readiness probe can wait for that.

Kubelet gRPC probes connect to a TCP port on the pod IP, while the DRA service
must only ever be reachable through its Unix socket. The TCP port is
therefore served by a separate gRPC server that carries nothing but health.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

OVERALL = ""
REGISTRATION = "registration"


class Health:
    def __init__(self) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self.servicer.set(OVERALL, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer.set(REGISTRATION, health_pb2.HealthCheckResponse.NOT_SERVING)

    def add_to(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def set_serving(self) -> None:
        self.servicer.set(OVERALL, health_pb2.HealthCheckResponse.SERVING)

    def set_registered(self, registered: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if registered
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.servicer.set(REGISTRATION, status)

    def shutdown(self) -> None:
        """Report NOT_SERVING everywhere (and to watchers) before the servers stop."""
        self.servicer.enter_graceful_shutdown()

    def serve_tcp(self, port: int) -> grpc.Server:
        """Start a health-only gRPC server on port (all interfaces) and return it."""
        server = grpc.server(ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
        self.add_to(server)
        server.add_insecure_port(f"[::]:{port}")
        server.start()
        log.info("health service listening", extra={"port": port})
        return server
