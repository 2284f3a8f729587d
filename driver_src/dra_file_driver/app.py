"""The driver process: wires the parts together and runs until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol

from . import __version__, config, kube, kubeconfig, logs
from .checkpoint import CheckpointError
from .claims import ApiClaimSource, ClaimSource
from .config import Config, ConfigError
from .device_state import DeviceState
from .devices import inventory
from .dra_service import DraCore, DraPluginV1, DraPluginV1beta1
from .health import Health, TcpHealthServer
from .kubeletapi import dra_v1_pb2_grpc, dra_v1beta1_pb2_grpc, pluginregistration_v1_pb2_grpc
from .metrics import Metrics
from .publisher import ApiSlices, SlicePublisher
from .registration import RegistrationServicer
from .unix_server import UnixSocketServer

log = logging.getLogger(__name__)

# In-flight prepares get this long to finish on shutdown. An interrupted one
# is safe anyway (see device_state), this only avoids needless retries.
SHUTDOWN_GRACE_SECONDS = 5.0


class Publisher(Protocol):
    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


class Driver:
    """All services of one driver instance; start() and stop() once each."""

    def __init__(
        self,
        cfg: Config,
        claim_source: ClaimSource,
        metrics: Metrics,
        publisher: Publisher | None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.health = Health()
        self.state = DeviceState(
            driver_name=cfg.driver_name,
            node_name=cfg.node_name,
            plugin_dir=cfg.plugin_dir,
            cdi_dir=cfg.cdi_dir,
            devices=inventory(cfg.file_dir, cfg.file_count),
            shared=cfg.shared,
            claim_source=claim_source,
        )
        metrics.track_prepared_claims(self.state.prepared_count)
        self._core = core = DraCore(self.state, cfg.driver_name, metrics)

        # The DRA servicers are coroutines with their own thread pool (dra_service).
        self.dra_server = UnixSocketServer(cfg.dra_socket, name="dra", max_workers=1)
        dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(DraPluginV1(core), self.dra_server.server)
        dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server(
            DraPluginV1beta1(core), self.dra_server.server
        )
        self.health.add_to(self.dra_server.server)

        self.registration_server = UnixSocketServer(
            cfg.registration_socket, name="registration", max_workers=2
        )
        pluginregistration_v1_pb2_grpc.add_RegistrationServicer_to_server(
            RegistrationServicer(cfg.driver_name, cfg.dra_socket, self.health.set_registered),
            self.registration_server.server,
        )
        self._publisher = publisher
        self._health_tcp: TcpHealthServer | None = None
        self._stop_metrics: Callable[[], None] | None = None
        self._stopped = False

    def start(self) -> None:
        # Node state first: nothing may be served before files and specs
        # agree with the checkpoint.
        self.state.start()
        # The kubelet connects to the DRA socket as soon as it has read the
        # registration, so that socket must be listening first.
        self.dra_server.start()
        self.registration_server.start()
        self.health.set_serving()
        if self.cfg.health_port is not None:
            self._health_tcp = self.health.serve_tcp(
                self.cfg.health_port,
                registration_socket=self.cfg.registration_socket,
                dra_socket=self.cfg.dra_socket,
            )
        if self.cfg.metrics_port is not None:
            self._stop_metrics = self.metrics.serve(self.cfg.metrics_port)
        if self._publisher is not None:
            self._publisher.start()
        log.info(
            "driver started",
            extra={
                "driver": self.cfg.driver_name,
                "node": self.cfg.node_name,
                "version": __version__,
                "devices": self.cfg.file_count,
                "shared": self.cfg.shared,
            },
        )

    def stop(self) -> None:
        """Stop everything that was started; later calls do nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.health.shutdown()
        # Registration socket first: its removal makes the kubelet deregister
        # the plugin, so no new calls arrive while in-flight ones finish.
        self.registration_server.stop(0)
        self.dra_server.stop(SHUTDOWN_GRACE_SECONDS)
        self._core.close()
        if self._health_tcp is not None:
            self._health_tcp.stop(0)
        if self._stop_metrics is not None:
            self._stop_metrics()
        if self._publisher is not None:
            self._publisher.stop()
        self.state.close()
        log.info("driver stopped")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config.parse(argv, os.environ)
        kubeconfig.check(cfg.kubeconfig)
    except ConfigError as exc:
        sys.stderr.write(f"dra-file-driver: {exc}\n")
        return 2
    except kubeconfig.KubeconfigError as exc:
        return kubeconfig_error(exc)
    logs.configure(cfg.log_format, cfg.log_level)

    metrics = Metrics()
    api = kube.Api(cfg.kubeconfig)
    publisher = SlicePublisher(
        ApiSlices(api),
        driver_name=cfg.driver_name,
        node_name=cfg.node_name,
        devices=inventory(cfg.file_dir, cfg.file_count),
        shared=cfg.shared,
        metrics=metrics,
    )
    driver = Driver(cfg, ApiClaimSource(api), metrics, publisher)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        driver.start()
    except (CheckpointError, OSError) as exc:
        log.error("cannot start: %s", exc)
        driver.stop()
        return 1
    # The sockets answer now. What is slow to load waits until here, so
    # that GetInfo does not wait for it: the metrics library, and the API
    # client (credentials, TLS, the HTTP modules; see kube), for which
    # prepares that arrive first wait within their deadline.
    metrics.load()
    try:
        api.connect()
    except kubeconfig.KubeconfigError as exc:
        driver.stop()
        return kubeconfig_error(exc)
    stop.wait()
    driver.stop()
    api.close()
    return 0


def kubeconfig_error(exc: kubeconfig.KubeconfigError) -> int:
    sys.stderr.write(f"dra-file-driver: --kubeconfig (KUBECONFIG): {exc}\n")
    return 2
