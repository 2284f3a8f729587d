"""Prometheus metrics of the driver (served only if --metrics-port is set).

prometheus_client is imported by load(), which the driver calls after its
sockets answer: the import takes tens of milliseconds (it brings an HTTP
server, urllib and ssl along) that the kubelet's GetInfo should not wait for.
An instrument used before load() loads it on the spot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Prepare/unprepare latency is dominated by one API GET and a few fsyncs:
# milliseconds normally, up to the kubelet's 45 s timeout when things go bad.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 45)


class _Instruments:
    """The metrics themselves, in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        from prometheus_client import (  # noqa: PLC0415 - see the module docstring
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
        )

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


class Metrics:
    """The driver's metrics; prometheus_client is loaded by load() or the first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instruments: _Instruments | None = None
        self._prepared_count: Callable[[], int] | None = None

    def load(self) -> None:
        self._loaded()

    def _loaded(self) -> _Instruments:
        instruments = self._instruments
        if instruments is None:
            with self._lock:
                if self._instruments is None:
                    self._instruments = _Instruments()
                    if self._prepared_count is not None:
                        self._instruments.prepared_claims.set_function(self._prepared_count)
                instruments = self._instruments
        return instruments

    # Instruments (prometheus_client objects; typed Any: the package has no stubs).

    @property
    def registry(self) -> Any:
        return self._loaded().registry

    @property
    def requests(self) -> Any:
        return self._loaded().requests

    @property
    def request_errors(self) -> Any:
        return self._loaded().request_errors

    @property
    def claim_errors(self) -> Any:
        return self._loaded().claim_errors

    @property
    def latency(self) -> Any:
        return self._loaded().latency

    @property
    def published_devices(self) -> Any:
        return self._loaded().published_devices

    def track_prepared_claims(self, count: Callable[[], int]) -> None:
        with self._lock:
            self._prepared_count = count
            if self._instruments is not None:
                self._instruments.prepared_claims.set_function(count)

    def serve(self, port: int) -> Callable[[], None]:
        """Serve /metrics on port (all interfaces, for scraping); return a stopper."""
        from prometheus_client import start_http_server  # noqa: PLC0415

        server, thread = start_http_server(port, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
