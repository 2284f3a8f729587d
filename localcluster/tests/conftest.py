"""Helpers shared by the local cluster's own tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from localcluster.pytest_plugin import ClusterHandle
from localcluster.versions import BUSYBOX_IMAGE

PodRunner = Callable[[str], tuple[str, str]]


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
