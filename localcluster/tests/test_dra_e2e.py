"""The whole DRA chain on the local node, with the project's driver as a host process.

A real scheduler allocates the driver's published device to a claim made from
a ResourceClaimTemplate, the real kubelet calls NodePrepareResources over the
driver's socket, containerd injects the file through CDI, and after the
Deployment is scaled to zero the kubelet's NodeUnprepareResources removes the
pod's name again. The driver runs as a process here; the Ansible roles run the
same driver as a DaemonSet pod on this provider.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localcluster.pytest_plugin import ClusterHandle
from localcluster.versions import BUSYBOX_IMAGE

pytestmark = [pytest.mark.cluster, pytest.mark.node]

DRIVER = "file.dra.example.com"
FILE_DIR = Path("/etc/dra")
DEVICE_FILE = FILE_DIR / "file1"
PLUGIN_DIR = Path("/var/lib/kubelet/plugins") / DRIVER
REGISTRATION_SOCKET = Path("/var/lib/kubelet/plugins_registry") / f"{DRIVER}-reg.sock"
CDI_DIR = Path("/var/run/cdi")


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _registered_with_kubelet() -> bool:
    """The driver's health service says the kubelet confirmed its registration."""
    with grpc.insecure_channel(f"unix://{PLUGIN_DIR / 'dra.sock'}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="registration"), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def driver_process(
    local_cluster: ClusterHandle, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    file_dir_existed = FILE_DIR.exists()
    log = (tmp_path / "driver.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dra_file_driver", "--log-format=json"],
        env={
            **os.environ,
            "NODE_NAME": local_cluster.node_name,
            "KUBECONFIG": str(local_cluster.kubeconfig),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(
            lambda: process.poll() is not None or _registered_with_kubelet(),
            60,
            "the kubelet to register the driver",
        )
        assert process.poll() is None, (tmp_path / "driver.log").read_text()
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(PLUGIN_DIR, ignore_errors=True)
        if not file_dir_existed:
            shutil.rmtree(FILE_DIR, ignore_errors=True)
    assert not REGISTRATION_SOCKET.exists(), "the driver left its registration socket behind"


@pytest.fixture
def demo_namespace(local_cluster: ClusterHandle) -> Iterator[str]:
    name = f"dra-e2e-{uuid.uuid4().hex[:6]}"
    local_cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    local_cluster.kubectl("delete", "namespace", name, "--wait=false")


def _manifests(namespace: str, device_class: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER}'"}}]},
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "file", "namespace": namespace},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [{"name": "file", "exactly": {"deviceClassName": device_class}}]
                    }
                }
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "consumer", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "consumer"}},
                "template": {
                    "metadata": {"labels": {"app": "consumer"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "automountServiceAccountToken": False,
                        "resourceClaims": [{"name": "file", "resourceClaimTemplateName": "file"}],
                        "containers": [
                            {
                                "name": "consumer",
                                "image": BUSYBOX_IMAGE,
                                "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "cat /etc/dra/file1; sleep 3600"],
                                "resources": {"claims": [{"name": "file"}]},
                            }
                        ],
                    },
                },
            },
        },
    ]


def _device_file_lines() -> list[str]:
    return DEVICE_FILE.read_text().splitlines() if DEVICE_FILE.exists() else []


def test_deployment_claims_the_file_device_and_unprepare_removes_its_name(
    local_cluster: ClusterHandle, driver_process: subprocess.Popen[bytes], demo_namespace: str
) -> None:
    device_class = f"e2e-file-{demo_namespace[-6:]}"

    # The driver published this node's pool, and the real validation accepted it.
    selector = f"spec.nodeName={local_cluster.node_name},spec.driver={DRIVER}"
    slices = _wait(
        lambda: local_cluster.get("resourceslices", f"--field-selector={selector}")["items"],
        60,
        "the driver's ResourceSlice",
    )
    assert [d["name"] for d in slices[0]["spec"]["devices"]] == ["file1"]

    local_cluster.create(*_manifests(demo_namespace, device_class))
    try:
        pod = _wait(
            lambda: next(
                (
                    p
                    for p in local_cluster.get("pods", "-n", demo_namespace)["items"]
                    if p["status"].get("phase") == "Running"
                ),
                None,
            ),
            120,
            "the consumer pod to run",
        )
        pod_name = pod["metadata"]["name"]

        # The scheduler allocated our device to the pod's own claim.
        claim_name = pod["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
        claim = local_cluster.get("resourceclaim", "-n", demo_namespace, claim_name)
        result = claim["status"]["allocation"]["devices"]["results"][0]
        assert (result["driver"], result["pool"], result["device"]) == (
            DRIVER,
            local_cluster.node_name,
            "file1",
        )
        assert [c["name"] for c in claim["status"]["reservedFor"]] == [pod_name]

        # NodePrepareResources wrote the name on the host, CDI put the file in the container.
        assert _device_file_lines() == [pod_name]
        inside = local_cluster.kubectl(
            "exec", "-n", demo_namespace, pod_name, "--", "cat", "/etc/dra/file1"
        ).stdout
        assert inside.splitlines() == [pod_name]
        environment = local_cluster.kubectl(
            "exec", "-n", demo_namespace, pod_name, "--", "env"
        ).stdout
        assert str(DEVICE_FILE) in environment
        cdi_specs = [p for p in CDI_DIR.iterdir() if claim["metadata"]["uid"] in p.name]
        assert len(cdi_specs) == 1

        # Scale to zero: the kubelet calls NodeUnprepareResources and the name goes.
        local_cluster.kubectl("scale", "-n", demo_namespace, "deployment/consumer", "--replicas=0")
        _wait(
            lambda: not local_cluster.get("pods", "-n", demo_namespace)["items"],
            120,
            "the consumer pod to go away",
        )
        _wait(
            lambda: pod_name not in _device_file_lines(),
            60,
            "the pod's name to leave the device file",
        )
        assert _device_file_lines() == []
        assert not cdi_specs[0].exists()
    finally:
        local_cluster.kubectl("delete", "deviceclass", device_class, "--ignore-not-found")
