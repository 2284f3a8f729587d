"""The demo on a real multi-node cluster: per-node devices, per-node files.

Runs against a cluster where the demo has converged (conftest.py says how it
is given): every node runs the driver and offers its own files, and the
demo's Deployment has one replica per node, each with a claim of its own.
The tests read the API and, inside every node, every device file, and check
that the two agree: a pod's name is written on the node it runs on and
nowhere else, and goes away only with the pod. Each test restores what it
changed (replicas, a killed kubelet) and waits for the converged demo again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

import pytest

from .demo_state import DemoPod, DemoReader, Snapshot, poll
from .kube_api import KubeApi
from .node_shell import NodeShell
from .settings import Settings
from .slice_watch import SliceWatch

pytestmark = [pytest.mark.kind, pytest.mark.multinode]

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# What the driver logs when the kubelet confirms its registration
# (driver_src/dra_file_driver/registration.py).
REGISTERED_MESSAGE = "kubelet registered the plugin"
# `logs --timestamps`: RFC 3339 with up to nanoseconds, which datetime cannot parse whole.
LOG_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def names_on(state: Snapshot, node: str) -> list[str]:
    """Every name in every file of node."""
    return [name for file in state.files[node].values() for name in file.pod_names]


def allocated_path(state: Snapshot, pod: DemoPod) -> str | None:
    """Path of the one device allocated to pod, None unless there is exactly one."""
    allocations = state.allocations_of(pod)
    return state.device_path(allocations[0]) if len(allocations) == 1 else None


def device_file_of(state: Snapshot, pod: DemoPod) -> str:
    """Path of the device allocated to pod, on its node (one device per pod)."""
    path = allocated_path(state, pod)
    assert path is not None, (
        f"pod {pod.name} has allocations {state.allocations_of(pod)}, "
        "not one published device of the driver"
    )
    return path


def new_pod_served_on(node: str, old_names: set[str]) -> Callable[[Snapshot], list[str]]:
    """What still keeps a new demo pod (none of old_names) from being served on node."""

    def problems(state: Snapshot) -> list[str]:
        new = [p for p in state.pods_on(node) if p.name not in old_names]
        if len(new) != 1 or not new[0].running:
            return [
                f"node {node}: new demo pods {[(p.name, p.running) for p in new]}, want 1 ready"
            ]
        path = allocated_path(state, new[0])
        if path is None:
            return [f"pod {new[0].name}: allocations {state.allocations_of(new[0])}"]
        file = state.files[node].get(path)
        if file is None or file.pod_names != [new[0].name]:
            return [f"{node}:{path} holds {file and file.content!r}, want only {new[0].name}"]
        stale = sorted(set(names_on(state, node)) & old_names)
        return [f"node {node}: old pod names {stale} still in its files"] if stale else []

    return problems


def registrations_on(kube: KubeApi, settings: Settings, node: str) -> list[float]:
    """When (Unix time) the kubelet confirmed the driver's registration on node.

    From the driver pods' logs, with the timestamps the container runtime
    adds to each line (the node shares this machine's clock).
    """
    pods = [
        p
        for p in kube.pods(settings.driver_namespace, settings.driver_selector)
        if p["spec"].get("nodeName") == node
    ]
    assert pods, f"no driver pod on node {node}"
    return sorted(
        log_line_time(line)
        for p in pods
        for line in kube.pod_log(settings.driver_namespace, p["metadata"]["name"]).splitlines()
        if REGISTERED_MESSAGE in line
    )


def log_line_time(line: str) -> float:
    """Unix time of a log line from `logs --timestamps` (RFC 3339, up to nanoseconds)."""
    stamp = line.split(" ", 1)[0]
    match = LOG_TIMESTAMP.fullmatch(stamp)
    assert match, f"log line without a timestamp: {line!r}"
    seconds, fraction, zone = match.groups()
    parsed = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    return parsed.timestamp() + float(f"0.{fraction or 0}")


def node_to_kill(kube: KubeApi, settings: Settings, nodes: tuple[str, ...]) -> str:
    if settings.kill_node:
        assert settings.kill_node in nodes, (
            f"kill node {settings.kill_node} offers no files: {nodes}"
        )
        return settings.kill_node
    labels = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in kube.nodes()}
    workers = [n for n in nodes if CONTROL_PLANE_LABEL not in labels.get(n, {})]
    assert workers, f"no worker among the nodes offering files {nodes}: give --multinode-kill-node"
    return workers[0]


def test_each_node_publishes_its_own_slice(demo: DemoReader, settings: Settings) -> None:
    state = demo.converged()
    assert len(state.nodes) >= 2, f"nodes offering files: {state.nodes}; not a multi-node cluster"
    for node in state.nodes:
        slices = state.slices_of(node)
        assert slices, f"node {node} publishes no ResourceSlice of {settings.driver_name}"
        for slice_ in slices:
            assert (slice_.pool, slice_.node) == (node, node), (
                f"slice {slice_.name} of node {node} has pool {slice_.pool!r}, "
                f"nodeName {slice_.node!r}; want the node's name for both"
            )
        offered = sorted(d.path for s in slices for d in s.devices)
        on_node = sorted(state.files[node])
        assert offered, f"node {node}'s slices offer no device"
        assert offered == on_node, (
            f"node {node}'s slices offer the files {offered}, "
            f"the node holds {on_node} in {settings.file_dir}"
        )
        names = [d.name for s in slices for d in s.devices]
        assert len(names) == len(set(names)), f"node {node} offers a device twice: {names}"
    pools = [s.pool for s in state.slices if s.node in state.nodes]
    assert sorted(set(pools)) == sorted(state.nodes), f"pools {pools} for nodes {state.nodes}"


def test_one_pod_per_node_and_its_name_only_on_that_node(demo: DemoReader) -> None:
    state = demo.converged()
    assert state.replicas == len(state.nodes), (
        f"the Deployment declares {state.replicas} replicas for {len(state.nodes)} nodes "
        "offering files; these tests need the demo's default, one per node"
    )
    for node in state.nodes:
        on_node = [p.name for p in state.pods_on(node)]
        assert len(on_node) == 1, f"node {node} runs demo pods {on_node}, want exactly one"
    for pod in state.pods:
        (allocation,) = state.allocations_of(pod)
        assert allocation.pool == pod.node, (
            f"pod {pod.name} runs on {pod.node} but its claim has {allocation.device} "
            f"of pool {allocation.pool}"
        )
        assert state.node_of_pool(allocation.pool) == pod.node, (
            f"pool {allocation.pool} is published for node {state.node_of_pool(allocation.pool)}"
        )
        path = device_file_of(state, pod)
        file = state.files[pod.node][path]
        assert file.content == f"{pod.name}\n".encode(), (
            f"{pod.node}:{path} holds {file.content!r}; the claim allocates it to {pod.name} alone"
        )
        holders = [node for node in state.nodes if pod.name in names_on(state, node)]
        assert holders == [pod.node], (
            f"pod {pod.name} runs on {pod.node}, its name is in the files of {holders}"
        )
    for node in state.nodes:
        expected = [p.name for p in state.pods_on(node)]
        assert sorted(names_on(state, node)) == expected, (
            f"the files of node {node} hold {names_on(state, node)}; it runs {expected}"
        )


def test_scale_down_removes_names_only_where_pods_went(
    demo: DemoReader, kube: KubeApi, settings: Settings
) -> None:
    before = demo.converged()
    replicas = before.replicas
    assert replicas >= 2, f"{replicas} replica(s): nothing to scale down to one"
    try:
        kube.scale_deployment(settings.demo_namespace, settings.deployment, 1)
        # The ReplicaSet marks the pods it removes at once; the one it keeps
        # must never lose its name while the others go.
        kept_pod = poll(lambda: _kept_pod(demo), settings.timeout, "one pod kept")
        assert kept_pod is not None
        kept = next((p for p in before.pods if p.uid == kept_pod.uid), None)
        assert kept is not None, f"the pod kept, {kept_pod.name}, is not one of {before.pods}"
        gone = [p for p in before.pods if p.name != kept.name]
        kept_path = device_file_of(before, kept)

        def scaled_down() -> tuple[Snapshot, list[str]]:
            state = demo.snapshot()
            kept_file = state.files[kept.node].get(kept_path)
            assert kept_file is not None, f"{kept.node}:{kept_path} is gone"
            assert kept.name in kept_file.pod_names, (
                f"the kept pod's name {kept.name} left {kept.node}:{kept_path} during "
                f"the scale-down: {kept_file.content!r}"
            )
            return state, state.problems()

        after = poll(scaled_down, settings.timeout, "the demo scaled down to one replica")
        assert [p.name for p in after.pods] == [kept.name]
        assert after.files[kept.node][kept_path].content == f"{kept.name}\n".encode()
        for pod in gone:
            assert names_on(after, pod.node) == [], (
                f"pod {pod.name} went from {pod.node}; its files still hold "
                f"{names_on(after, pod.node)}"
            )
        for node in after.nodes:
            assert not {p.name for p in gone} & set(names_on(after, node)), (
                f"removed pods' names are still on node {node}: {names_on(after, node)}"
            )
    finally:
        kube.scale_deployment(settings.demo_namespace, settings.deployment, replicas)
        restored = demo.converged(f"the demo scaled back to {replicas} replicas")
    assert sorted(p.node for p in restored.pods) == sorted(restored.nodes), (
        f"scaled back: pods on {[p.node for p in restored.pods]}, want one per node"
    )


def _kept_pod(demo: DemoReader) -> tuple[DemoPod | None, list[str]]:
    live = [p for p in demo.demo_pods() if not p.terminating]
    if len(live) == 1:
        return live[0], []
    return None, [f"demo pods not terminating: {[p.name for p in live]}"]


def test_kubelet_kill_leaves_other_nodes_serving_and_recovers(
    demo: DemoReader,
    kube: KubeApi,
    shell: NodeShell,
    settings: Settings,
    report_figure: Callable[[str], None],
) -> None:
    before = demo.converged()
    victim = node_to_kill(kube, settings, before.nodes)
    other = next(n for n in before.nodes if n != victim)
    for node in (victim, other):
        assert len(before.pods_on(node)) == 1, f"node {node} runs {before.pods_on(node)}"
    (victim_pod,), (other_pod,) = before.pods_on(victim), before.pods_on(other)
    victim_path = device_file_of(before, victim_pod)
    old_pid = shell.kubelet_pid(victim)
    assert old_pid is not None, f"no kubelet runs on node {victim}"
    restarts = shell.kubelet_restarts(victim)
    old_names = {p.name for p in before.pods}

    with SliceWatch(kube, settings.driver_name, victim) as slices:
        assert slices.initial_uids, f"node {victim} has no slice before the kill"
        try:
            killed_at, killed_at_wall = time.monotonic(), time.time()
            shell.kill_kubelet(victim)

            # The other nodes keep serving: a pod deleted on one is replaced
            # there, and the new name reaches that node's file.
            kube.delete_pod(settings.demo_namespace, other_pod.name)
            other_deleted_at = time.monotonic()
            check = new_pod_served_on(other, old_names)
            poll(lambda: _checked(demo, check), settings.timeout, f"a new pod served on {other}")
            other_served_at = time.monotonic()

            # systemd starts a new kubelet, which wipes the node's slices at
            # its start; the driver publishes them again.
            poll(
                lambda: _kubelet_restarted(shell, victim, old_pid),
                settings.timeout,
                f"a new kubelet on {victim}",
            )
            assert shell.kubelet_restarts(victim) == restarts + 1, (
                f"systemd restarted the kubelet on {victim} "
                f"{shell.kubelet_restarts(victim) - restarts} times, want once"
            )
            restarted_at = shell.kubelet_started_at(victim)
            deleted = slices.wait_for(
                lambda e: e.type == "DELETED" and e.uid in slices.initial_uids,
                settings.timeout,
                f"the restarted kubelet deleting node {victim}'s slice",
            )
            back = slices.wait_for(
                lambda e: e.type == "ADDED" and e.uid not in slices.initial_uids,
                settings.timeout,
                f"node {victim}'s slice published again",
            )
            registered_at_wall = poll(
                lambda: _registered_since(kube, settings, victim, killed_at_wall),
                settings.timeout,
                f"the restarted kubelet on {victim} registering the driver",
            )

            # The victim's pod ran on throughout: same pod, its name still there.
            state = demo.snapshot()
            assert [(p.name, p.uid) for p in state.pods_on(victim)] == [
                (victim_pod.name, victim_pod.uid)
            ], f"node {victim} runs {state.pods_on(victim)} after the kubelet restart"
            victim_file = state.files[victim][victim_path]
            assert victim_file.content == f"{victim_pod.name}\n".encode(), (
                f"{victim}:{victim_path} holds {victim_file.content!r} after the kubelet "
                f"restart; want {victim_pod.name}"
            )
            report_figure(
                f"kubelet kill -9 on {victim}, seconds after the kill: kubelet restarted "
                f"by systemd {restarted_at - killed_at:.1f}, its slice deleted "
                f"{deleted.at - killed_at:.1f} and back {back.at - killed_at:.1f} "
                f"(recovery time), driver re-registered {registered_at_wall - killed_at_wall:.1f}; "
                f"meanwhile a pod deleted on {other} at {other_deleted_at - killed_at:.1f} "
                f"was replaced and its name in {other}'s file by "
                f"{other_served_at - killed_at:.1f}"
            )

            # The restarted kubelet prepares through the re-registered driver:
            # a pod deleted on the victim is replaced there (its device is the
            # only free one) and its name is written.
            kube.delete_pod(settings.demo_namespace, victim_pod.name)
            check = new_pod_served_on(victim, old_names)
            poll(lambda: _checked(demo, check), settings.timeout, f"a new pod served on {victim}")
        finally:
            poll(
                lambda: (None, [] if shell.kubelet_pid(victim) else [f"no kubelet on {victim}"]),
                settings.timeout,
                f"the kubelet running on {victim}",
            )
            demo.converged("the converged demo after the kubelet restart")


def _checked(
    demo: DemoReader, problems: Callable[[Snapshot], list[str]]
) -> tuple[Snapshot, list[str]]:
    state = demo.snapshot()
    return state, problems(state)


def _kubelet_restarted(shell: NodeShell, node: str, old_pid: int) -> tuple[int | None, list[str]]:
    pid = shell.kubelet_pid(node)
    if pid is None or pid == old_pid:
        return pid, [f"kubelet on {node}: pid {pid} (killed: {old_pid})"]
    return pid, []


def _registered_since(
    kube: KubeApi, settings: Settings, node: str, since: float
) -> tuple[float, list[str]]:
    """The first registration of the driver on node after since (Unix time)."""
    later = [t for t in registrations_on(kube, settings, node) if t > since]
    return (later[0], []) if later else (0.0, [f"no registration on {node} logged since the kill"])
