"""A running kind cluster of another size is refused before anything changes.

kind cannot add or remove nodes of a running cluster. `site.yml` asked for
another worker count than the converged cluster has must fail in its input
phase, name dra_cluster_kind_workers and say how to get there, and change
nothing: no task reports a change, no file is written, the nodes stay. Runs
the real playbook against the kind cluster these tests are given (its name
from the kubeconfig context, kind-<name>).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .kube_api import KubeApi
from .settings import Settings

REPO = Path(__file__).resolve().parents[2]
KIND_CONTEXT_PREFIX = "kind-"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = [pytest.mark.kind, pytest.mark.multinode]


def test_site_yml_refuses_another_node_count_and_changes_nothing(
    settings: Settings, kube: KubeApi, tmp_path: Path
) -> None:
    if not settings.context.startswith(KIND_CONTEXT_PREFIX):
        pytest.skip(f"not a kind cluster (context {settings.context!r})")
    cluster = settings.context.removeprefix(KIND_CONTEXT_PREFIX)
    nodes_before = sorted(node["metadata"]["name"] for node in kube.nodes())
    asked_workers = len(nodes_before)  # one node more than it has
    artifacts = tmp_path / "artifacts"
    variables = {
        "dra_cluster_provider": "kind",
        "dra_cluster_kind_name": cluster,
        "dra_cluster_kind_workers": asked_workers,
        "dra_cluster_artifacts_dir": str(artifacts),
        "dra_driver_artifacts_dir": str(artifacts),
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "playbooks/site.yml",
            "--extra-vars",
            json.dumps(variables),
        ],
        cwd=REPO,
        # Plain text even under molecule, which forces colours on.
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PY_COLORS": "0",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    said = " ".join(ANSI_ESCAPE.sub("", run.stdout).split()).replace("''", "'")
    assert run.returncode != 0, said
    assert (
        f"dra_cluster_kind_workers={asked_workers} asks for {asked_workers + 1} nodes, "
        f"but kind cluster {cluster} runs {len(nodes_before)}" in said
    ), said
    assert "--tags clean" in said
    assert " changed=0 " in said
    assert " failed=1 " in said
    assert "TASK [dra_cluster : Kind |" not in said, "the bring-up ran"
    assert not artifacts.exists()
    assert sorted(node["metadata"]["name"] for node in kube.nodes()) == nodes_before
