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
    return lambda script: _run_pod_to_completion(local_cluster, script)


def _run_pod_to_completion(
    cluster: ClusterHandle, script: str, timeout: float = 120
) -> tuple[str, str]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "probe",
                        "image": BUSYBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                    }
                ],
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
