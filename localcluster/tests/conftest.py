"""Helpers shared by the local cluster's own tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

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
    """Run a busybox pod with `sh -c script`; return (phase, log). The pod is deleted."""
    api = client.CoreV1Api(cluster.api_client())
    name = f"probe-{uuid.uuid4().hex[:8]}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
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
    api.create_namespaced_pod("default", pod)
    try:
        deadline = time.monotonic() + timeout
        phase = "Pending"
        while time.monotonic() < deadline:
            phase = api.read_namespaced_pod(name, "default").status.phase
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        log = api.read_namespaced_pod_log(name, "default") if phase != "Pending" else ""
        return phase, log
    finally:
        api.delete_namespaced_pod(name, "default", grace_period_seconds=0)
