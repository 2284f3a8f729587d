"""kind for real: a three-node cluster on podman from the node image built here.

Creates the cluster (1 control plane, 2 workers, Kubernetes v1.37.2), checks
that every node is Ready, that kube-proxy runs on every node, and that a
busybox pod (built here, loaded with `kind load image-archive`) runs on each
worker with an address from that worker's pod CIDR; then deletes the cluster
and checks that no container, volume or network of it is left.

Heavy (three systemd containers on two cores): run it under the machine-wide
lock, `flock /tmp/dra-cluster.lock pytest -m kind …`.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.binaries import default_cache_dir, ensure_binaries
from localcluster.images import build_busybox_archive
from localcluster.kind_cluster import (
    KindCluster,
    KindError,
    cluster_config,
    ensure_kind,
    podman_environment,
    privileged_container_problem,
)
from localcluster.kind_node_image import build_node_image
from localcluster.versions import BUSYBOX_IMAGE, KubernetesVersion

pytestmark = pytest.mark.kind

VERSION = KubernetesVersion.parse("v1.37.2")
CLUSTER = "dra-kind-test"
WORKERS = 2


def _podman_names(env: dict[str, str], *listing: str) -> set[str]:
    result = subprocess.run(
        ["podman", *listing], env=env, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def _podman_state(env: dict[str, str]) -> dict[str, set[str]]:
    return {
        "containers": _podman_names(env, "ps", "--all", "--format", "{{.Names}}"),
        "volumes": _podman_names(env, "volume", "ls", "--quiet"),
        "networks": _podman_names(env, "network", "ls", "--format", "{{.Name}}"),
    }


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> dict[str, object]:
        parsed = json.loads(self(*args, "-o", "json"))
        assert isinstance(parsed, dict)
        return parsed


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KindCluster, Kubectl]]:
    if shutil.which("podman") is None:
        pytest.skip(
            "kind needs privileged node containers: podman is not installed "
            "(scripts/kind-prereqs installs it)"
        )
    cache = default_cache_dir()
    image = build_node_image(VERSION, cache)
    env = podman_environment(cache)
    problem = privileged_container_problem(image.reference, env)
    if problem is not None:
        pytest.skip(f"kind needs privileged node containers: {problem}")
    kind = ensure_kind(cache)
    workdir = tmp_path_factory.mktemp("kind")
    cluster = KindCluster(CLUSTER, kind, env, workdir / "kubeconfig")
    kubectl = Kubectl(ensure_binaries(VERSION, cache).path("kubectl"), cluster.kubeconfig)

    before = _podman_state(env)
    started = time.monotonic()
    try:
        try:
            cluster.create(cluster_config(CLUSTER, image.reference, workers=WORKERS))
        except KindError:
            print(cluster.diagnostics())
            raise
        print(f"\nkind cluster created in {time.monotonic() - started:.0f}s ({image.reference})")
        yield cluster, kubectl
    finally:
        cluster.delete()
        after = _podman_state(env)
        # kind leaves its "kind" network for the next cluster; one we made, we remove.
        if "kind" in after["networks"] - before["networks"]:
            subprocess.run(["podman", "network", "rm", "kind"], env=env, check=True)
        assert _podman_state(env) == before, "the kind cluster left podman objects behind"


def test_three_nodes_become_ready(kind_cluster: tuple[KindCluster, Kubectl]) -> None:
    cluster, kubectl = kind_cluster
    names = cluster.node_names()
    assert sorted(names) == sorted(
        [f"{CLUSTER}-control-plane", f"{CLUSTER}-worker", f"{CLUSTER}-worker2"]
    )
    try:
        kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=300s", timeout=330)
    except AssertionError:
        print(cluster.diagnostics())
        raise
    nodes = kubectl.json("get", "nodes")["items"]
    assert isinstance(nodes, list)
    assert {node["metadata"]["name"] for node in nodes} == set(names)
    assert {node["status"]["nodeInfo"]["kubeletVersion"] for node in nodes} == {VERSION.tag}


def test_kube_proxy_runs_on_every_node(kind_cluster: tuple[KindCluster, Kubectl]) -> None:
    _, kubectl = kind_cluster
    kubectl(
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/kube-proxy",
        "--timeout=300s",
        timeout=330,
    )
    pods = kubectl.json("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy")["items"]
    assert isinstance(pods, list)
    assert len({pod["spec"]["nodeName"] for pod in pods}) == 1 + WORKERS


def test_a_locally_built_pod_runs_on_each_worker(
    kind_cluster: tuple[KindCluster, Kubectl], tmp_path: Path
) -> None:
    cluster, kubectl = kind_cluster
    cluster.load_image_archive(build_busybox_archive(tmp_path / "busybox.tar"))
    workers = [name for name in cluster.node_names() if "worker" in name]
    for worker in workers:
        kubectl("apply", "-f", "-", stdin=json.dumps(_pod_on(worker)))
    for worker in workers:
        kubectl(
            "wait", "--for=condition=Ready", f"pod/sleep-on-{worker}", "--timeout=180s", timeout=210
        )
    for worker in workers:
        pod = kubectl.json("get", "pod", f"sleep-on-{worker}")
        node = kubectl.json("get", "node", worker)
        assert pod["spec"]["nodeName"] == worker  # type: ignore[index]
        pod_ip = ipaddress.ip_address(pod["status"]["podIP"])  # type: ignore[index]
        pod_cidr = ipaddress.ip_network(node["spec"]["podCIDR"])  # type: ignore[index]
        assert pod_ip in pod_cidr, f"{worker}: pod IP {pod_ip} is not in its pod CIDR {pod_cidr}"


def _pod_on(node: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"sleep-on-{node}", "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "sleep",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",  # loaded with `kind load`; nothing can be pulled
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }
