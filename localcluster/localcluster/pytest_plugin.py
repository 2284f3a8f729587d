"""pytest fixtures that give tests a real cluster, built on the same code as the CLI.

One cluster serves the whole test session. `control_plane` needs only etcd, the
API server, the controller manager and the scheduler; `local_cluster` adds the
node to the same cluster. A test that takes the cluster down on purpose brings
it back before it ends. The session ends with `down`, unless LOCALCLUSTER_KEEP=1
asks to keep the cluster for debugging.

The test cluster has its own run directory (LOCALCLUSTER_TEST_RUN_DIR), so it
never touches a demo cluster's state; the node paths are fixed by Kubernetes,
so the two cannot run at the same time, and `up` says so. It runs the release
LOCALCLUSTER_KUBERNETES_VERSION names, as the CLI does, so the whole suite can be
pointed at an older supported release; it turns on the feature gates the
driver's tests need where that release leaves them off, and those named in
LOCALCLUSTER_FEATURE_GATES.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localcluster import featuregates
from localcluster.cluster import LocalCluster
from localcluster.layout import KUBECONFIG_CONTEXT
from localcluster.versions import DEFAULT_KUBERNETES_VERSION, KubernetesVersion

DEFAULT_TEST_RUN_DIR = Path("/var/lib/dra-localcluster-tests")


def feature_gates_for_tests(version: KubernetesVersion) -> dict[str, bool]:
    """Gates the driver's tests need that this release leaves off.

    The driver's --shared mode publishes devices with allowMultipleAllocations,
    which the API server drops unless DRAConsumableCapacity is on: alpha (off
    by default) in 1.34 and 1.35, beta (on) from 1.36.
    """
    return {"DRAConsumableCapacity": True} if version.minor < 36 else {}


@dataclass(frozen=True)
class ClusterHandle:
    """What a test needs to talk to the cluster."""

    cluster: LocalCluster

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def node_name(self) -> str:
        return self.cluster.node_name

    @property
    def run_dir(self) -> Path:
        return self.cluster.layout.root

    def api_client(self) -> client.ApiClient:
        api_client: client.ApiClient = config.new_client_from_config(
            str(self.kubeconfig), context=KUBECONFIG_CONTEXT
        )
        return api_client

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl against it."""
        kubectl = self.cluster.build().path("kubectl")
        return subprocess.run(
            [str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed: objects as plain dicts, every field kept."""
        document: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return document

    def create(self, *manifests: dict[str, Any]) -> None:
        """Create objects from manifests, as `kubectl create -f` does."""
        items = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.kubectl("create", "-f", "-", stdin=json.dumps(items))


@pytest.fixture(scope="session")
def local_cluster_manager() -> Iterator[LocalCluster]:
    """The session's cluster object; brought down when the session ends."""
    run_dir = Path(os.environ.get("LOCALCLUSTER_TEST_RUN_DIR", DEFAULT_TEST_RUN_DIR))
    version = KubernetesVersion.parse(
        os.environ.get("LOCALCLUSTER_KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION)
    )
    gates = {
        **feature_gates_for_tests(version),
        **featuregates.parse(os.environ.get("LOCALCLUSTER_FEATURE_GATES", "")),
    }
    cluster = LocalCluster(run_dir=run_dir, kubernetes_version=version.tag, feature_gates=gates)
    yield cluster
    if os.environ.get("LOCALCLUSTER_KEEP") != "1":
        cluster.down()


@pytest.fixture(scope="module")
def test_cluster_stopped(local_cluster_manager: LocalCluster) -> Iterator[None]:
    """No test cluster on the machine, for tests that bring up a cluster of their own.

    Only one local cluster runs per machine (`up` refuses a second), so a test
    that runs the playbook's own cluster needs the session's out of the way;
    afterwards the session's cluster comes back as it was.
    """
    status = local_cluster_manager.status()
    local_cluster_manager.down()
    yield
    if status["running"]:
        local_cluster_manager.up(with_node=status["node_running"])


@pytest.fixture(scope="session")
def control_plane(local_cluster_manager: LocalCluster) -> ClusterHandle:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler; no kubelet."""
    local_cluster_manager.up(with_node=False)
    return ClusterHandle(local_cluster_manager)


@pytest.fixture(scope="session")
def local_cluster(local_cluster_manager: LocalCluster) -> ClusterHandle:
    """The control plane plus containerd, the kubelet and kube-proxy; the node is Ready."""
    local_cluster_manager.up(with_node=True)
    return ClusterHandle(local_cluster_manager)
