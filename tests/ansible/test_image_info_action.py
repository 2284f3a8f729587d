"""dra_driver_image_info: the driver image check of every run, answered by
the Docker daemon's socket in Ansible's process, as the module answers it.

Needs the Docker daemon (scripts/bootstrap starts it); pinned against the real
community.docker.docker_image_info on the same names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PLAYBOOK = "tests/ansible/dra_driver/image_info.yml"


@pytest.fixture(scope="module")
def action(role_plugin: Callable[[str, str, str], ModuleType]) -> ModuleType:
    return role_plugin("dra_driver", "action_plugins", "dra_driver_image_info")


@pytest.fixture(scope="module")
def local_image() -> str:
    """An image the local daemon has (bootstrap leaves the driver's base image)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    listing = subprocess.run(
        [docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = [n for n in listing.stdout.split() if not n.endswith(":<none>")]
    if listing.returncode != 0 or not names:
        pytest.skip(f"no Docker daemon with a tagged image: {listing.stderr.strip()}")
    return names[0]


def _answers(run_playbook: Any, tmp_path: Path, names: list[str]) -> dict[str, Any]:
    answer_file = tmp_path / "answer.json"
    run = run_playbook(
        PLAYBOOK, "-e", json.dumps({"image_names": names, "answer_file": str(answer_file)})
    )
    assert run.returncode == 0, run.output
    answers: dict[str, Any] = json.loads(answer_file.read_text())
    return answers


def test_the_action_answers_as_the_module_does(
    run_playbook: Any, tmp_path: Path, local_image: str
) -> None:
    missing = "dra-demo-test/never-built:0"
    answers = _answers(run_playbook, tmp_path, [local_image, missing])
    action, module = answers["action"], answers["module"]
    assert "msg" not in action, action
    assert action["changed"] is False
    # The same images (the missing one left out by both), the same documents.
    assert [image["Id"] for image in action["images"]] == [
        image["Id"] for image in module["images"]
    ]
    assert len(action["images"]) == 1
    assert action["images"][0]["RepoTags"] == module["images"][0]["RepoTags"]


def test_a_daemon_not_on_this_machines_socket_is_asked_by_the_module(
    run_playbook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed_port}")
    answers = _answers(run_playbook, tmp_path, ["busybox:latest"])
    # Both fail the same way: the action handed the question to the module.
    assert answers["action"]["msg"] == answers["module"]["msg"]
    assert f"port={closed_port}" in answers["action"]["msg"]


def test_which_daemon_is_this_machines_socket(action: ModuleType) -> None:
    assert action.local_socket({}) == "/var/run/docker.sock"
    assert action.local_socket({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}) == (
        "/run/user/1000/docker.sock"
    )
    assert action.local_socket({"DOCKER_HOST": "tcp://10.0.0.1:2376"}) is None
    assert action.local_socket({"DOCKER_HOST": "ssh://user@host"}) is None
    assert action.local_socket({"DOCKER_TLS_VERIFY": "1"}) is None


def test_a_socket_nobody_listens_on_is_a_clear_error(action: ModuleType, tmp_path: Path) -> None:
    from ansible.errors import AnsibleActionFail

    with pytest.raises(AnsibleActionFail, match="Error connecting to the Docker daemon"):
        action.inspect_images(str(tmp_path / "docker.sock"), ["busybox:latest"])
