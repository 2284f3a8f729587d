"""Only one local cluster owns the machine; a second one refuses and harms nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster.cluster import HOST_OWNER_FILE, ClusterError, LocalCluster
from localcluster.pytest_plugin import ClusterHandle

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def test_a_second_cluster_refuses_to_start_and_its_down_leaves_the_first_alone(
    local_cluster: ClusterHandle, run_pod: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    intruder = LocalCluster(run_dir=tmp_path / "second")
    with pytest.raises(ClusterError, match=str(local_cluster.run_dir)):
        intruder.up(with_node=False)
    assert not (tmp_path / "second" / "state.json").exists()

    intruder.down()

    assert local_cluster.cluster.up(with_node=True).started == ()
    phase, log = run_pod("echo still-here")
    assert (phase, log.strip()) == ("Succeeded", "still-here")


def test_a_kubelet_the_cluster_did_not_start_keeps_its_node_from_starting(
    restore_cluster: LocalCluster, start_named_process: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    restore_cluster.down()
    foreign = start_named_process("kubelet")
    with pytest.raises(
        ClusterError, match=f"a kubelet that is not this cluster's .*pid {foreign.pid}"
    ):
        restore_cluster.up(with_node=True)
    # Refused before anything was written or started.
    assert not HOST_OWNER_FILE.exists()
    assert not restore_cluster.layout.state_file.exists()
    assert restore_cluster.status()["components"]["etcd"]["running"] is False
