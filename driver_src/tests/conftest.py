"""Fixtures for the driver's tests.

The cluster fixtures (control_plane, local_cluster) come from the localcluster
pytest plugin, registered by the repository's root conftest.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver.app import Driver
from dra_file_driver.metrics import Metrics

from . import cluster_kit
from .driver_testkit import FakeClaimSource, RunningDriver, StartDriver, make_config
from .kubelet_client import KubeletClient


@pytest.fixture
def base_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be
    # longer than that once socket names are appended.
    path = Path(tempfile.mkdtemp(prefix="dra-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_claims() -> FakeClaimSource:
    return FakeClaimSource()


@pytest.fixture
def start_driver(base_dir: Path, fake_claims: FakeClaimSource) -> Iterator[StartDriver]:
    """Start in-process drivers (no API server: claims come from fake_claims)."""
    started: list[RunningDriver] = []

    def start(register: bool = True, **overrides: Any) -> RunningDriver:
        cfg = make_config(base_dir, **overrides)
        driver = Driver(cfg, fake_claims, Metrics(), publisher=None)
        driver.start()
        kubelet = KubeletClient(cfg.registration_socket)
        running = RunningDriver(driver, kubelet, cfg)
        started.append(running)
        if register:
            kubelet.register()
        return running

    yield start
    for running in started:
        running.kubelet.close()
        running.driver.stop()


# --- real API server --------------------------------------------------------


@pytest.fixture(scope="module")
def admin_api(control_plane: Any) -> Any:
    """Admin client of the real API server (system:masters)."""
    return control_plane.api_client()


@pytest.fixture
def node(admin_api: Any) -> Iterator[str]:
    """A fresh Node object per test, so slices of different tests never mix."""
    with cluster_kit.fake_node(admin_api) as name:
        yield name


@pytest.fixture(scope="module")
def test_namespace(admin_api: Any) -> Iterator[str]:
    with cluster_kit.namespace(admin_api) as name:
        yield name


@pytest.fixture
def driver_process(
    base_dir: Path, control_plane: Any, node: str
) -> Iterator[cluster_kit.StartProcess]:
    """Start the driver as a process against the real API server; stopped at teardown."""
    processes: list[cluster_kit.DriverProcess] = []

    def start(*args: str) -> cluster_kit.DriverProcess:
        proc = cluster_kit.start_driver_process(
            base_dir, control_plane.kubeconfig, node, *args, log_name=f"driver-{len(processes)}.log"
        )
        processes.append(proc)
        proc.wait_started()
        return proc

    yield start
    for proc in processes:
        proc.kill()
