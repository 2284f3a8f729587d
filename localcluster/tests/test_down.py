"""`down` leaves the machine as it was; a failed `up` cleans up and names the culprit.

The checks read the kernel's own view (/proc, mountinfo, /sys, iptables), not
what the cluster code believes it created, so a leak the teardown does not
know about is still caught.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster.cluster import LocalCluster, RunState
from localcluster.layout import KUBELET_ROOT
from localcluster.processes import ComponentError

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _cluster_processes(run_dir: Path) -> list[str]:
    """Live processes of this cluster: its components and shims (their command
    lines name the run directory) and containers (they sit in the kubelet's cgroups).
    """
    found: list[str] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue  # gone meanwhile
        if state != "Z" and (str(run_dir) in cmdline or "/kubepods" in cgroups):
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def _mount_points(*directories: Path, inside: tuple[Path, ...] = ()) -> list[str]:
    """Mount points at or below `directories`, and strictly below `inside`.

    The netns directories go in `inside`: `ip netns` and podman make the
    directory itself a shared bind mount and leave it so; that mount is theirs.
    What the cluster mounts there (one nsfs file per pod) must all be gone.
    """
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [
        p
        for p in points
        if any(p == str(d) or p.startswith(f"{d}/") for d in directories)
        or any(p.startswith(f"{d}/") for d in inside)
    ]


def _kube_chains() -> list[str]:
    chains = []
    for command in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            listing = subprocess.run(
                [command, "-t", table, "-S"], capture_output=True, text=True, check=False
            ).stdout
            chains += [
                f"{command} {table} {line}" for line in listing.splitlines() if "KUBE-" in line
            ]
    return chains


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _pod_veths(bridge: str) -> list[str]:
    """veths on this host that are not another bridge's: the cluster's pods' host ends.

    A pod's veth hangs on the cluster's bridge, and would hang on none once the
    bridge is gone; veths on other bridges (podman's kind nodes, say) are not ours.
    """
    veths = [line for line in _links().splitlines() if " veth" in line]
    return [line for line in veths if " master " not in line or f" master {bridge} " in line]


def test_down_leaves_no_process_mount_device_cgroup_or_rule(
    restore_cluster: LocalCluster, run_pod: Callable[[str], tuple[str, str]]
) -> None:
    cluster = restore_cluster
    # A pod has run, so containers, volumes, veths and a netns have existed.
    assert run_pod("echo busy")[0] == "Succeeded"
    state = RunState.load(cluster.layout.state_file)
    assert state is not None
    bridge = cluster.layout.network.bridge
    assert bridge in _links()
    assert _kube_chains()

    assert cluster.down()

    assert _cluster_processes(cluster.layout.root) == []
    assert (
        _mount_points(
            KUBELET_ROOT,
            cluster.layout.root,
            Path("/run/containerd"),
            inside=(Path("/run/netns"), Path("/var/run/netns")),
        )
        == []
    )
    assert bridge not in _links()
    assert _pod_veths(bridge) == []
    assert list(Path("/sys/fs/cgroup").glob("*/kubepods")) == []
    assert _kube_chains() == []
    assert not cluster.layout.root.exists()
    assert [p for p in state.created_host_paths if Path(p).exists()] == []
    assert cluster.down() is False  # nothing left to do


def test_failed_up_names_the_component_shows_its_log_and_cleans_up(
    restore_cluster: LocalCluster,
) -> None:
    cluster = restore_cluster
    cluster.down()
    # Hold etcd's client port so that etcd, the first component, cannot start.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", cluster.layout.network.etcd_client_port))
    blocker.listen()
    try:
        with pytest.raises(ComponentError) as failure:
            cluster.up(with_node=True)
    finally:
        blocker.close()
    assert failure.value.component == "etcd"
    assert "address already in use" in str(failure.value)
    assert _cluster_processes(cluster.layout.root) == []
    assert cluster.layout.network.bridge not in _links()
    assert not cluster.layout.root.exists()


def test_an_unknown_feature_gate_fails_up_at_the_api_server_and_cleans_up(
    restore_cluster: LocalCluster,
) -> None:
    restore_cluster.down()
    cluster = LocalCluster(
        run_dir=restore_cluster.layout.root,
        kubernetes_version=restore_cluster.version.tag,
        node_name=restore_cluster.node_name,
        feature_gates={**restore_cluster.feature_gates, "NoSuchGate": True},
    )
    with pytest.raises(ComponentError) as failure:
        cluster.up(with_node=True)
    # The gate reached the API server's command line, and its own check refused it.
    assert failure.value.component == "kube-apiserver"
    assert "unrecognized feature gate: NoSuchGate" in str(failure.value)
    assert _cluster_processes(cluster.layout.root) == []
    assert cluster.layout.network.bridge not in _links()
    assert not cluster.layout.root.exists()
