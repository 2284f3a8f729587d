"""Prometheus metrics of the driver (served only if --metrics-port is set)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Prepare/unprepare latency is dominated by one API GET and a few fsyncs:
# milliseconds normally, up to the kubelet's 45 s timeout when things go bad.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 45)


class Metrics:
    """The driver's metrics, in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "api")
        self.requests = Counter(
            "dra_file_driver_requests",
            "DRA gRPC requests received.",
            labels,
            registry=self.registry,
        )
        self.request_errors = Counter(
            "dra_file_driver_request_errors",
            "DRA gRPC requests that failed as a whole (answered with a gRPC error).",
            labels,
            registry=self.registry,
        )
        self.claim_errors = Counter(
            "dra_file_driver_claim_errors",
            "Claims answered with a per-claim error.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "dra_file_driver_request_duration_seconds",
            "Time to answer a DRA gRPC request.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.published_devices = Gauge(
            "dra_file_driver_published_devices",
            "Devices in this node's ResourceSlices, as last confirmed by the API server.",
            registry=self.registry,
        )
        self.prepared_claims = Gauge(
            "dra_file_driver_prepared_claims",
            "Claims prepared on this node (checkpoint entries).",
            registry=self.registry,
        )

    def track_prepared_claims(self, count: Callable[[], int]) -> None:
        self.prepared_claims.set_function(count)

    def serve(self, port: int) -> Callable[[], None]:
        """Serve /metrics on port (all interfaces, for scraping); return a stopper."""
        server, thread = start_http_server(port, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
