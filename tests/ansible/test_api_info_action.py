"""dra_cluster_api_info, the API preflight of every run: the server's version
and the kinds it serves in one group version, asked in Ansible's process.

Against the session's real control plane (marker cluster: run under
`flock /tmp/dra-cluster.lock`), plus failures that need no server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DRA_KINDS = ["DeviceClass", "ResourceClaim", "ResourceClaimTemplate", "ResourceSlice"]


@pytest.fixture(scope="module")
def action(role_plugin: Callable[[str, str, str], ModuleType]) -> ModuleType:
    return role_plugin("dra_cluster", "action_plugins", "dra_cluster_api_info")


@pytest.mark.cluster
def test_version_and_served_kinds_of_a_real_server(control_plane: Any, action: ModuleType) -> None:
    info = action.api_info(str(control_plane.kubeconfig), "localcluster", "resource.k8s.io/v1")
    assert info["git_version"] == control_plane.cluster.version.tag
    # The kinds the role needs are served; subresources (resourceclaims/status)
    # are not kinds of their own.
    assert set(DRA_KINDS) <= set(info["served_kinds"])
    assert info["served_kinds"] == sorted(set(info["served_kinds"]))
    core = action.api_info(str(control_plane.kubeconfig), "localcluster", "v1")
    assert "Pod" in core["served_kinds"]


@pytest.mark.cluster
def test_a_group_version_not_served_lists_no_kinds(control_plane: Any, action: ModuleType) -> None:
    info = action.api_info(str(control_plane.kubeconfig), "localcluster", "resource.k8s.io/v9")
    assert info["served_kinds"] == []


def _ask(run_playbook: Any, tmp_path: Path, kubeconfig: str, context: str, *args: str) -> Any:
    """Run the action through ansible-playbook; its registered result. (The
    playbook's failed_when: false keeps the run going, as the role's does:
    the role's assert then reports msg.)"""
    answer = tmp_path / "answer.json"
    variables = {"api_kubeconfig": kubeconfig, "api_context": context, "answer_file": str(answer)}
    run = run_playbook("tests/ansible/api_info.yml", *args, "-e", json.dumps(variables))
    assert run.returncode == 0, run.output
    return json.loads(answer.read_text())


@pytest.mark.cluster
def test_through_ansible_in_check_mode(
    control_plane: Any, run_playbook: Any, tmp_path: Path
) -> None:
    result = _ask(run_playbook, tmp_path, str(control_plane.kubeconfig), "localcluster", "--check")
    assert result["changed"] is False
    assert "msg" not in result
    assert set(DRA_KINDS) <= set(result["served_kinds"])


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("gone", "the API server cannot be reached"),
        # A context the kubeconfig does not have: the kubeconfig is the problem.
        ("other", "the kubeconfig cannot be used"),
    ],
)
def test_a_server_that_cannot_be_asked_fails_with_a_message(
    run_playbook: Any, tmp_path: Path, closed_port: int, context: str, message: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{closed_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    result = _ask(run_playbook, tmp_path, str(kubeconfig), context)
    assert "git_version" not in result
    assert result["msg"].startswith(message)
    if context == "other":
        assert "other" in result["msg"]
