"""One look at the whole demo: API objects and every device file of every node.

A Snapshot joins what the API says (ResourceSlices, the demo's pods and
their ResourceClaims, the Deployment, the nodes) with what the nodes hold
(every file of the driver's file directory, read on the node), so a test can
compare the two. `problems()` lists every way the snapshot differs from the
converged demo; the tests wait for it to be empty and then assert the
details they are about.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .kube_api import JsonObject, KubeApi
from .node_shell import DeviceFile, NodeShell
from .settings import Settings

# Seconds between two looks while waiting.
POLL_INTERVAL = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Device:
    name: str
    path: str


@dataclass(frozen=True)
class Slice:
    name: str
    uid: str
    node: str
    pool: str
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class Allocation:
    """One allocation result of a claim for the driver under test."""

    pool: str
    device: str


@dataclass(frozen=True)
class Claim:
    name: str
    reserved_for: tuple[str, ...]  # pod UIDs
    allocations: tuple[Allocation, ...]


@dataclass(frozen=True)
class DemoPod:
    name: str
    uid: str
    node: str  # "" before it is scheduled
    running: bool  # phase Running and condition Ready
    terminating: bool
    claims: tuple[str, ...]  # the ResourceClaims made for it


def parse_slice(obj: JsonObject) -> Slice:
    spec = obj["spec"]
    return Slice(
        name=obj["metadata"]["name"],
        uid=obj["metadata"]["uid"],
        node=spec.get("nodeName", ""),
        pool=spec["pool"]["name"],
        devices=tuple(
            Device(
                name=device["name"],
                path=device.get("attributes", {}).get("path", {}).get("string", ""),
            )
            for device in spec.get("devices", [])
        ),
    )


def parse_pod(obj: JsonObject) -> DemoPod:
    status = obj.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return DemoPod(
        name=obj["metadata"]["name"],
        uid=obj["metadata"]["uid"],
        node=obj["spec"].get("nodeName", ""),
        running=status.get("phase") == "Running" and conditions.get("Ready") == "True",
        terminating=obj["metadata"].get("deletionTimestamp") is not None,
        claims=tuple(
            entry["resourceClaimName"]
            for entry in status.get("resourceClaimStatuses", [])
            if entry.get("resourceClaimName")
        ),
    )


def parse_claim(obj: JsonObject, driver: str) -> Claim:
    status = obj.get("status", {})
    results = status.get("allocation", {}).get("devices", {}).get("results", [])
    return Claim(
        name=obj["metadata"]["name"],
        reserved_for=tuple(ref["uid"] for ref in status.get("reservedFor", [])),
        allocations=tuple(
            Allocation(pool=result["pool"], device=result["device"])
            for result in results
            if result["driver"] == driver
        ),
    )


def _ready(node: JsonObject) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass(frozen=True)
class Snapshot:
    # Nodes that offer files: those a driver pod is scheduled to.
    nodes: tuple[str, ...]
    ready_nodes: frozenset[str]
    slices: tuple[Slice, ...]
    pods: tuple[DemoPod, ...]
    claims: dict[str, Claim]
    # node -> path -> the file as read on the node
    files: dict[str, dict[str, DeviceFile]]
    replicas: int  # the Deployment's spec.replicas
    ready_replicas: int

    def slices_of(self, node: str) -> list[Slice]:
        return [s for s in self.slices if s.node == node]

    def pods_on(self, node: str) -> list[DemoPod]:
        return [p for p in self.pods if p.node == node]

    def allocations_of(self, pod: DemoPod) -> list[Allocation]:
        return [
            a
            for claim in pod.claims
            if claim in self.claims
            for a in self.claims[claim].allocations
        ]

    def device_path(self, allocation: Allocation) -> str | None:
        """Path of an allocated device, from the slice of its pool (None if unpublished)."""
        for slice_ in self.slices:
            if slice_.pool == allocation.pool:
                for device in slice_.devices:
                    if device.name == allocation.device:
                        return device.path
        return None

    def node_of_pool(self, pool: str) -> str | None:
        nodes = {s.node for s in self.slices if s.pool == pool}
        return nodes.pop() if len(nodes) == 1 else None

    def expected_names(self) -> dict[tuple[str, str], list[str]]:
        """(node, path) -> the pods allocated that device there, for every file read."""
        expected: dict[tuple[str, str], list[str]] = {
            (node, path): [] for node, files in self.files.items() for path in files
        }
        for pod in self.pods:
            for allocation in self.allocations_of(pod):
                node, path = self.node_of_pool(allocation.pool), self.device_path(allocation)
                if node is not None and path is not None:
                    expected.setdefault((node, path), []).append(pod.name)
        return {key: sorted(names) for key, names in expected.items()}

    def problems(self) -> list[str]:
        """Every way this differs from the converged demo (empty when converged)."""
        found: list[str] = []
        found += [f"node {n} is not Ready" for n in self.nodes if n not in self.ready_nodes]
        for node in self.nodes:
            slices = self.slices_of(node)
            if not slices:
                found.append(f"node {node} has no ResourceSlice")
            found += [
                f"slice {s.name} of node {node} has pool {s.pool!r}"
                for s in slices
                if s.pool != node
            ]
        if self.ready_replicas != self.replicas or len(self.pods) != self.replicas:
            found.append(
                f"Deployment: {self.replicas} replicas declared, {self.ready_replicas} ready, "
                f"{len(self.pods)} pods ({', '.join(p.name for p in self.pods)})"
            )
        for pod in self.pods:
            if pod.terminating or not pod.running:
                found.append(
                    f"pod {pod.name} is {'terminating' if pod.terminating else 'not ready'}"
                )
            allocations = self.allocations_of(pod)
            if len(allocations) != 1:
                found.append(
                    f"pod {pod.name} has {len(allocations)} devices of the driver allocated"
                )
            found += [
                f"pod {pod.name} runs on {pod.node} but is allocated {a.device} of pool {a.pool}"
                for a in allocations
                if a.pool != pod.node
            ]
            found += [
                f"claim {claim} is not reserved for pod {pod.name}"
                for claim in pod.claims
                if claim in self.claims and pod.uid not in self.claims[claim].reserved_for
            ]
        for (node, path), names in sorted(self.expected_names().items()):
            file = self.files.get(node, {}).get(path)
            if file is None:
                found.append(f"{node}:{path} does not exist, allocated to {names}")
            elif sorted(file.pod_names) != names or not file.well_formed:
                found.append(
                    f"{node}:{path} holds {file.content!r}, the API allocates it to {names}"
                )
        return found


class DemoReader:
    """Takes Snapshots of the demo described by settings."""

    def __init__(self, settings: Settings, api: KubeApi, shell: NodeShell) -> None:
        self.settings, self.api, self.shell = settings, api, shell

    def demo_pods(self) -> list[DemoPod]:
        deployment = self.api.deployment(self.settings.demo_namespace, self.settings.deployment)
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        return [parse_pod(p) for p in self.api.pods(self.settings.demo_namespace, selector)]

    def driver_pods(self) -> list[JsonObject]:
        return self.api.pods(self.settings.driver_namespace, self.settings.driver_selector)

    def snapshot(self) -> Snapshot:
        settings = self.settings
        deployment = self.api.deployment(settings.demo_namespace, settings.deployment)
        nodes = sorted({p["spec"].get("nodeName", "") for p in self.driver_pods()} - {""})
        field_selector = f"spec.driver={settings.driver_name}"
        slices = [parse_slice(s) for s in self.api.slices(field_selector)["items"]]
        return Snapshot(
            nodes=tuple(nodes),
            ready_nodes=frozenset(n["metadata"]["name"] for n in self.api.nodes() if _ready(n)),
            slices=tuple(sorted(slices, key=lambda s: (s.node, s.name))),
            pods=tuple(sorted(self.demo_pods(), key=lambda p: p.name)),
            claims={
                c["metadata"]["name"]: parse_claim(c, settings.driver_name)
                for c in self.api.claims(settings.demo_namespace)
            },
            files={node: self.shell.device_files(node, settings.file_dir) for node in nodes},
            replicas=int(deployment["spec"].get("replicas", 1)),
            ready_replicas=int(deployment.get("status", {}).get("readyReplicas", 0)),
        )

    def converged(self, what: str = "the converged demo") -> Snapshot:
        """Wait until the demo has converged; its snapshot."""
        return poll(lambda: _with_problems(self.snapshot()), self.settings.timeout, what)


def _with_problems(snapshot: Snapshot) -> tuple[Snapshot, list[str]]:
    return snapshot, snapshot.problems()


def poll(probe: Callable[[], tuple[T, list[str]]], timeout: float, what: str) -> T:
    """Call probe until it reports no problem; fail with the last problems after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value, problems = probe()
        if not problems:
            return value
        if time.monotonic() > deadline:
            listed = "\n  ".join(problems)
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s:\n  {listed}")
        time.sleep(POLL_INTERVAL)
