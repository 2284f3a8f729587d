"""Helpers for tests and benchmarks against a real API server.

The API server is the real one (built from upstream by the localcluster
package); these helpers create the objects a scheduler and a kubelet would
otherwise produce, with an admin client, so that every branch of the driver
can be driven by genuine, validated API objects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from .driver_testkit import directory_flags, wait_for
from .kubelet_client import Claim

DRIVER = "file.dra.example.com"
GROUP, VERSION = "resource.k8s.io", "v1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def fake_node(api: client.ApiClient, name: str | None = None) -> Iterator[str]:
    """A Node object without a kubelet: enough to own slices and to be scheduled to."""
    core = client.CoreV1Api(api)
    node_name = name or unique("dra-node")
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=node_name, labels={"kubernetes.io/hostname": node_name, "dra-test": "true"}
            )
        )
    )
    # Capacity lets the real scheduler place pods here (there is no kubelet
    # to report it).
    capacity = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    core.patch_node_status(node_name, {"status": {"capacity": capacity, "allocatable": capacity}})
    try:
        yield node_name
    finally:
        core.delete_node(node_name)


@contextmanager
def namespace(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = unique("dra-test")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def has_default_service_account() -> bool:
        # Pod admission needs it; the controller-manager creates it shortly.
        return any(
            sa.metadata is not None and sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(name).items
        )

    wait_for(has_default_service_account, 60, f"service account default in {name}")
    try:
        yield name
    finally:
        core.delete_namespace(name)


def create_claim(
    api: client.ApiClient,
    ns: str,
    name: str | None = None,
    requests: Sequence[str] = ("files",),
    device_class: str = DRIVER,
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceClaim",
        "metadata": {"name": name or unique("claim")},
        "spec": {
            "devices": {
                "requests": [
                    {"name": r, "exactly": {"deviceClassName": device_class}} for r in requests
                ]
            }
        },
    }
    return cast(
        dict[str, Any],
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, ns, "resourceclaims", body
        ),
    )


def pending_pod(api: client.ApiClient, ns: str, name: str) -> dict[str, str]:
    """A Pod that exists but never gets scheduled; returns its reservedFor entry.

    The reservation must name a real pod: kube-controller-manager's
    resourceclaim controller removes reservedFor entries whose pod does not
    exist (or has another UID) within moments.
    """
    core = client.CoreV1Api(api)
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"dra-test/no-such-node": "true"},
            containers=[client.V1Container(name="c", image="registry.invalid/none:never-pulled")],
        ),
    )
    try:
        pod = core.create_namespaced_pod(ns, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        pod = core.read_namespaced_pod(name, ns)
    assert pod.metadata is not None
    return {"resource": "pods", "name": name, "uid": str(pod.metadata.uid)}


def allocate(
    api: client.ApiClient,
    claim: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    pods: Sequence[str] = (),
    reserved_for: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write an allocation and reservation into the claim's status, as the scheduler does.

    pods are created (if needed) as pending pods and reserved by name and UID;
    reserved_for gives the raw entries instead.
    """
    meta = claim["metadata"]
    consumers = (
        list(reserved_for)
        if reserved_for is not None
        else [pending_pod(api, meta["namespace"], p) for p in pods]
    )
    status: dict[str, Any] = {"allocation": {"devices": {"results": list(results)}}}
    if consumers:
        status["reservedFor"] = consumers
    body = {**claim, "status": status}
    return cast(
        dict[str, Any],
        client.CustomObjectsApi(api).replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], "resourceclaims", meta["name"], body
        ),
    )


def result(device: str, pool: str, request: str = "files", driver: str = DRIVER) -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": pool, "device": device}


def node_uid(api: client.ApiClient, node: str) -> str:
    metadata = client.CoreV1Api(api).read_node(node).metadata
    assert metadata is not None
    assert metadata.uid is not None
    return metadata.uid


def consumer_pod(name: str, node: str, claim_name: str) -> client.V1Pod:
    """A pod pinned to node that consumes claim_name (its image is never pulled: no kubelet)."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node},
            tolerations=[client.V1Toleration(operator="Exists")],
            resource_claims=[
                client.V1PodResourceClaim(name="file", resource_claim_name=claim_name)
            ],
            containers=[
                client.V1Container(
                    name="c",
                    image="registry.invalid/none:never-pulled",
                    resources=client.V1ResourceRequirements(
                        claims=[client.CoreV1ResourceClaim(name="file")]
                    ),
                )
            ],
        ),
    )


def as_claim(obj: Mapping[str, Any]) -> Claim:
    meta = obj["metadata"]
    return Claim(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])


def list_slices(api: client.ApiClient, node: str, driver: str = DRIVER) -> list[dict[str, Any]]:
    listing = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP,
        VERSION,
        "resourceslices",
        field_selector=f"spec.nodeName={node},spec.driver={driver}",
    )
    return cast(list[dict[str, Any]], cast(dict[str, Any], listing)["items"])


@dataclass
class DriverProcess:
    """The driver running as its own process (the console script's code path)."""

    process: subprocess.Popen[bytes]
    base: Path
    node: str
    log_path: Path

    @property
    def registration_socket(self) -> Path:
        return self.base / "reg" / f"{DRIVER}-reg.sock"

    @property
    def plugin_dir(self) -> Path:
        return self.base / "plugin"

    @property
    def cdi_dir(self) -> Path:
        return self.base / "cdi"

    @property
    def file_dir(self) -> Path:
        return self.base / "files"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 60) -> None:
        """Wait for the start-up log line (the socket files alone may be stale ones)."""

        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"driver exited with {self.process.returncode}:\n{self.log()}")
            return "driver started" in self.log()

        wait_for(started, timeout, "the driver to start")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)


def driver_environment() -> dict[str, str]:
    """A clean environment for the driver: PATH, and PYTHONPATH if set.

    PYTHONPATH lets a benchmark run another checkout's driver code;
    DRA_DRIVER_PYTHONPATH does the same for the driver process alone (a test
    run against the code before a change).
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")}
    if "DRA_DRIVER_PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["DRA_DRIVER_PYTHONPATH"]
    return env


def start_driver_process(
    base: Path, kubeconfig: Path, node: str, *args: str, log_name: str = "driver.log"
) -> DriverProcess:
    log_path = base / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dra_file_driver",
                "--node-name",
                node,
                "--kubeconfig",
                str(kubeconfig),
                *directory_flags(base),
                *args,
            ],
            env=driver_environment(),
            cwd=base,  # not the caller's: with -m, the current directory comes first on sys.path
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return DriverProcess(process, base, node, log_path)


StartProcess = Callable[..., DriverProcess]
