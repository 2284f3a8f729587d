"""A rolling update of the driver under load, on the local node with its real kubelet.

The driver's DaemonSet updates with maxSurge 1 and maxUnavailable 0: on each
node the controller starts a pod of the new revision beside the old one,
waits until it is ready (the kubelet confirmed its registration) and only
then deletes the old pod. This test performs exactly that sequence with the
driver as host processes (as localcluster/tests/test_dra_e2e.py runs it), each
instance with its own pod UID and with a changed setting (the log level), a
few times in a row, while real pods claiming the driver's devices are
created and deleted without pause.

It counts what the kubelet reports as failed: FailedPrepareDynamicResources
events and unprepare errors in its log, and checks that the node never lacks
a registered plugin: some instance's registration socket and the node's
ResourceSlice are present at every sample.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes import client

from dra_file_driver import cdi, config

pytestmark = [pytest.mark.cluster, pytest.mark.node]

DRIVER = "file.dra.example.com"
GROUP, VERSION = "resource.k8s.io", "v1"
FILE_DIR = Path("/etc/dra")
PLUGIN_DIR = Path("/var/lib/kubelet/plugins") / DRIVER
REGISTRY_DIR = Path("/var/lib/kubelet/plugins_registry")
CDI_DIR = Path("/var/run/cdi")
BUSYBOX_IMAGE = "docker.io/library/busybox:1.35"
FILE_COUNT = 4
ROLLOUTS = 6
WORKERS = 2
# Bounds, not timings: the loop stops after the rollouts, at the latest here.
MAX_CYCLES_PER_WORKER = 40
POD_RUNNING_TIMEOUT = 120.0
# The kubelet reads each claim itself before it calls the driver. A refusal
# of that read (the node authorizer has not yet linked a brand-new claim to
# the node) fails the pod's preparation before any driver is involved; the
# kubelet retries it. Such failures are counted apart from the driver's.
KUBELET_OWN_CLAIM_READ = "fetch ResourceClaim"
# Kubelet (klog) error and warning lines about a failed prepare or unprepare.
KUBELET_PROBLEM = re.compile(r"[EW]\d{4} ")
KUBELET_DRA_CALL = re.compile(
    r"(NodePrepareResources|NodeUnprepareResources|prepare dynamic resources|"
    r"unprepare dynamic resources|DRA driver \S+ is not registered)",
    re.IGNORECASE,
)


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Instance:
    """One driver process: one pod of the DaemonSet."""

    pod_uid: str
    log_level: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def cfg(self) -> config.Config:
        return config.parse(["--node-name", "n", "--pod-uid", self.pod_uid], {})

    def registered(self) -> bool:
        """Ready, as the DaemonSet's readiness probe sees it: the kubelet confirmed it."""
        if self.process.poll() is not None:
            raise AssertionError(f"driver {self.pod_uid} exited:\n{self.log_path.read_text()}")
        with grpc.insecure_channel(f"unix:{self.cfg.dra_socket}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="registration"), timeout=2
                )
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@dataclass
class Observations:
    """What the samplers and the workload saw; read after the threads ended."""

    samples: int = 0
    no_registration_socket: int = 0
    no_slice: int = 0
    pods_run: int = 0
    pods_deleted: int = 0
    workload_errors: list[str] = field(default_factory=list)


def registration_sockets() -> list[Path]:
    if not REGISTRY_DIR.is_dir():
        return []
    return [p for p in REGISTRY_DIR.iterdir() if p.name.startswith(DRIVER) and p.is_socket()]


@pytest.fixture
def start_instance(local_cluster: Any, tmp_path: Path) -> Iterator[Callable[[str], Instance]]:
    file_dir_existed = FILE_DIR.exists()
    instances: list[Instance] = []

    def start(log_level: str) -> Instance:
        pod_uid = str(uuid.uuid4())
        log_path = tmp_path / f"driver-{len(instances)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dra_file_driver",
                    "--log-format=json",
                    f"--log-level={log_level}",
                    f"--file-count={FILE_COUNT}",
                ],
                env={
                    "PATH": os.environ["PATH"],
                    "NODE_NAME": local_cluster.node_name,
                    "KUBECONFIG": str(local_cluster.kubeconfig),
                    "POD_UID": pod_uid,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        instance = Instance(pod_uid, log_level, process, log_path)
        instances.append(instance)
        return instance

    try:
        yield start
    finally:
        for instance in instances:
            instance.stop()
        shutil.rmtree(PLUGIN_DIR, ignore_errors=True)
        if not file_dir_existed:
            shutil.rmtree(FILE_DIR, ignore_errors=True)
    leftovers = registration_sockets()
    assert leftovers == [], f"registration sockets left behind: {leftovers}"


@pytest.fixture
def namespace(local_cluster: Any) -> Iterator[str]:
    core = client.CoreV1Api(local_cluster.api_client())
    name = f"dra-rollout-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait(
        lambda: any(
            sa.metadata is not None and sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(name).items
        ),
        60,
        "the namespace's default service account",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture
def device_class(local_cluster: Any) -> Iterator[str]:
    objects = client.CustomObjectsApi(local_cluster.api_client())
    name = f"rollout-file-{uuid.uuid4().hex[:6]}"
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "deviceclasses",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER}'"}}]},
        },
    )
    yield name
    objects.delete_cluster_custom_object(GROUP, VERSION, "deviceclasses", name)


def consumer_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            # Deleted gracefully: the kubelet removes the pod object only
            # after it unprepared the claim, so the device is free before
            # the claim is deleted and allocated again.
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "resourceClaims": [{"name": "file", "resourceClaimTemplateName": "file"}],
            "containers": [
                {
                    "name": "consumer",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "cat /etc/dra/file*; sleep 3600"],
                    "resources": {"claims": [{"name": "file"}]},
                }
            ],
        },
    }


@dataclass
class Workload:
    """Pods that claim a device, created and deleted one after another per worker."""

    api: client.ApiClient
    namespace: str
    rollouts_done: threading.Event
    seen: Observations
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        """Create a pod, wait until it runs, delete it, wait until it is gone; repeat."""
        for cycle in range(MAX_CYCLES_PER_WORKER):
            if self.rollouts_done.is_set() and cycle >= 2:
                return
            name = f"consumer-{worker}-{cycle}"
            try:
                self._cycle(name)
            except (AssertionError, client.ApiException) as exc:
                with self.lock:
                    self.seen.workload_errors.append(f"{name}: {exc}")
                return

    def _cycle(self, name: str) -> None:
        pods = client.CoreV1Api(self.api)
        # A dict body: the client serialises it as it is.
        pods.create_namespaced_pod(self.namespace, cast(Any, consumer_pod(name)))
        wait(lambda: self._running(name), POD_RUNNING_TIMEOUT, f"pod {name} to run")
        with self.lock:
            self.seen.pods_run += 1
        pods.delete_namespaced_pod(name, self.namespace)
        # A killed container may leave the pod Failed until the kubelet
        # has unprepared its claim and removes it.
        wait(lambda: self._phase(name) is None, POD_RUNNING_TIMEOUT, f"pod {name} to go")
        with self.lock:
            self.seen.pods_deleted += 1

    def _running(self, name: str) -> bool:
        """Whether the pod runs; a pod that ended before it was deleted fails the workload."""
        phase = self._phase(name)
        if phase in ("Failed", "Succeeded", None):
            raise AssertionError(f"pod {name} ended (phase {phase}) before it was deleted")
        return phase == "Running"

    def _phase(self, name: str) -> str | None:
        """The pod's phase, None once it is gone."""
        try:
            pod = client.CoreV1Api(self.api).read_namespaced_pod(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        phase = pod.status.phase if pod.status is not None else None
        return phase or "Pending"


def node_slices(api: client.ApiClient, node: str) -> list[dict[str, Any]]:
    listing = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP,
        VERSION,
        "resourceslices",
        field_selector=f"spec.nodeName={node},spec.driver={DRIVER}",
    )
    return cast(list[dict[str, Any]], cast(dict[str, Any], listing)["items"])


def sample_registration(
    api: client.ApiClient, node: str, stop: threading.Event, seen: Observations
) -> None:
    while not stop.is_set():
        sockets = registration_sockets()
        try:
            slices = node_slices(api, node)
        except client.ApiException as exc:
            seen.workload_errors.append(f"listing the node's slices: {exc}")
            return
        seen.samples += 1
        seen.no_registration_socket += not sockets
        seen.no_slice += not slices
        stop.wait(0.1)


def failed_prepare_events(core: client.CoreV1Api, namespace: str) -> list[str]:
    events = core.list_namespaced_event(namespace).items
    return [
        f"{e.involved_object.name}: {e.message}"
        for e in events
        if e.reason == "FailedPrepareDynamicResources"
    ]


def test_rolling_update_under_load_fails_no_prepare_and_keeps_a_plugin_registered(
    local_cluster: Any,
    start_instance: Callable[[str], Instance],
    namespace: str,
    device_class: str,
) -> None:
    api = local_cluster.api_client()
    core = client.CoreV1Api(api)
    kubelet_log = local_cluster.cluster.layout.log_file("kubelet")
    kubelet_log_start = kubelet_log.stat().st_size

    current = start_instance("info")
    wait(current.registered, 60, "the first driver instance to be registered")
    wait(lambda: node_slices(api, local_cluster.node_name), 60, "the node's ResourceSlice")
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "resourceclaimtemplates",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "file"},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [{"name": "file", "exactly": {"deviceClassName": device_class}}]
                    }
                }
            },
        },
    )

    seen = Observations()
    rollouts_done = threading.Event()
    stop_sampling = threading.Event()
    workload = Workload(local_cluster.api_client(), namespace, rollouts_done, seen)
    sampler = threading.Thread(
        target=sample_registration,
        args=(api, local_cluster.node_name, stop_sampling, seen),
        daemon=True,
    )
    workers = [
        threading.Thread(target=workload.run, args=(w,), daemon=True) for w in range(WORKERS)
    ]
    sampler.start()
    for w in workers:
        w.start()
    exit_codes = []
    try:
        # Let the workload get going, then roll: new beside old, old goes
        # once the new one is ready. Each revision changes the log level.
        wait(lambda: seen.pods_run >= 1 or seen.workload_errors, 180, "the first pod to run")
        for rollout in range(ROLLOUTS):
            time.sleep(3)
            new = start_instance("debug" if rollout % 2 == 0 else "info")
            wait(new.registered, 60, f"instance {rollout + 1} to be registered")
            exit_codes.append(current.stop())
            current = new
        rollouts_done.set()
        # Each worker ends within two more cycles of at most two waits each.
        for w in workers:
            w.join(timeout=4 * POD_RUNNING_TIMEOUT + 30)
        assert not any(w.is_alive() for w in workers), "the workload did not end"
    finally:
        rollouts_done.set()
        stop_sampling.set()
        sampler.join(timeout=30)

    events = failed_prepare_events(core, namespace)
    kubelet_lines = [
        line
        for line in kubelet_log.read_bytes()[kubelet_log_start:]
        .decode(errors="replace")
        .splitlines()
        if KUBELET_PROBLEM.match(line) and KUBELET_DRA_CALL.search(line)
    ]
    failed_prepares = [e for e in events if KUBELET_OWN_CLAIM_READ not in e]
    kubelet_failures = [line for line in kubelet_lines if KUBELET_OWN_CLAIM_READ not in line]
    refused_claim_reads = len(events) - len(failed_prepares)
    print(
        f"\nrollout: {ROLLOUTS} updates, {seen.pods_run} pods prepared and "
        f"{seen.pods_deleted} deleted ({WORKERS} workers), "
        f"{len(failed_prepares)} FailedPrepareDynamicResources events, "
        f"{len(kubelet_failures)} kubelet prepare/unprepare errors "
        f"(apart: {refused_claim_reads} events of the kubelet's own claim read refused), "
        f"{seen.samples} registration samples: {seen.no_registration_socket} without a "
        f"registration socket, {seen.no_slice} without the node's ResourceSlice"
    )
    assert seen.workload_errors == []
    assert exit_codes == [0] * ROLLOUTS
    assert failed_prepares == []
    assert kubelet_failures == []
    assert seen.pods_run >= WORKERS * 2
    assert seen.pods_deleted == seen.pods_run
    assert seen.samples > 0
    assert seen.no_registration_socket == 0
    assert seen.no_slice == 0

    # Every unprepare finished: no pod name is left in a device file and no
    # CDI spec of this driver is left (the last instance still serves).
    def all_unprepared() -> bool:
        names = [n for f in FILE_DIR.glob("file*") for n in f.read_text().splitlines()]
        return not names and not cdi.SpecDirectory(CDI_DIR, DRIVER).claim_uids()

    wait(all_unprepared, 60, "every claim to be unprepared")
    assert current.registered()
