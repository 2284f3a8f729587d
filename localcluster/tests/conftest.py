"""Helpers shared by the local cluster's own tests."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster.cluster import LocalCluster
from localcluster.pytest_plugin import ClusterHandle
from localcluster.versions import BUSYBOX_IMAGE

PodRunner = Callable[[str], tuple[str, str]]
ProcessStarter = Callable[[str], subprocess.Popen[bytes]]


@pytest.fixture
def restore_cluster(local_cluster: ClusterHandle) -> Iterator[LocalCluster]:
    """The session cluster, brought back up after the test took it down."""
    yield local_cluster.cluster
    local_cluster.cluster.up(with_node=True)


@pytest.fixture
def start_named_process(tmp_path: Path) -> Iterator[ProcessStarter]:
    """Start a `sleep` whose command name (/proc/<pid>/comm) is the one given.

    The name comes from a renamed copy of the binary; every process started is
    killed and reaped after the test.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        binary = tmp_path / f"process-{len(started)}" / name
        binary.parent.mkdir()
        shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
        child = subprocess.Popen([str(binary), "300"])
        started.append(child)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != name[:15]:
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.01)
        return child

    yield start
    for child in started:
        child.kill()
        child.wait()


@pytest.fixture
def run_pod(local_cluster: ClusterHandle) -> PodRunner:
    """Run `sh -c script` in a busybox pod on the node; return (phase, log)."""
    return lambda script: _run_pod_to_completion(local_cluster, BUSYBOX_IMAGE, ["sh", "-c", script])


@pytest.fixture
def run_image(local_cluster: ClusterHandle) -> PodRunner:
    """Run a pod of the node's image `image` as the image itself says; return (phase, log)."""
    return lambda image: _run_pod_to_completion(local_cluster, image, None)


def _run_pod_to_completion(
    cluster: ClusterHandle, image: str, command: list[str] | None, timeout: float = 120
) -> tuple[str, str]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    container: dict[str, object] = {"name": "probe", "image": image, "imagePullPolicy": "Never"}
    if command is not None:
        container["command"] = command
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [container],
            },
        }
    )
    try:
        deadline = time.monotonic() + timeout
        phase = "Pending"
        while time.monotonic() < deadline:
            phase = cluster.get("pod", "-n", "default", name)["status"].get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        log = cluster.kubectl("logs", "-n", "default", name).stdout if phase != "Pending" else ""
        return phase, log
    finally:
        cluster.kubectl("delete", "pod", "-n", "default", name, "--grace-period=0", "--wait=false")
