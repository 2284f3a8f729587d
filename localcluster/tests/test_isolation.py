"""Only one local cluster owns the machine; a second one refuses and harms nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster.cluster import ClusterError, LocalCluster
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
