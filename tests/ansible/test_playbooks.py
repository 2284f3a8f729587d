"""Every playbook of the Ansible delivery passes `ansible-playbook --syntax-check`,
and site.yml's tags select what the documentation says they select."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted(
    str(path.relative_to(REPO))
    for pattern in ("playbooks/*.yml", "molecule/shared/*.yml", "tests/ansible/*.yml")
    for path in REPO.glob(pattern)
    # Extra vars of every scenario, not a playbook.
    if path.name != "vars.yml"
)
TASK_RE = re.compile(r"^\s{6}(.+?)\tTAGS: \[(.*)\]$", re.MULTILINE)


def listed_tasks(run_playbook: Any, *args: str) -> list[str]:
    result = run_playbook("playbooks/site.yml", "--list-tasks", *args)
    assert result.returncode == 0, result.output
    return [name for name, _tags in TASK_RE.findall(result.output)]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax(run_playbook: Any, playbook: str) -> None:
    result = run_playbook(playbook, "--syntax-check")
    assert result.returncode == 0, result.output


def test_default_run_brings_up_and_verifies_but_never_cleans(run_playbook: Any) -> None:
    tasks = listed_tasks(run_playbook)
    assert any(t.startswith("dra_cluster : Local | start the cluster") for t in tasks)
    assert any(t.startswith("dra_driver : Image | build the driver image") for t in tasks)
    assert any(
        t.startswith("dra_driver : Driver | namespace, RBAC, admission policy and DaemonSet")
        for t in tasks
    )
    assert any(
        t.startswith(
            "dra_demo : Demo | namespace, DeviceClass, ResourceClaimTemplate and Deployment"
        )
        for t in tasks
    )
    # Role argument validation is tagged `always` by ansible-core, even for
    # the never-tagged clean entry points: it only validates, so ignore it.
    work = [t for t in tasks if "Validating arguments against arg spec" not in t]
    assert work[-1] == "dra_demo : Verify | summary"
    assert not any(": Clean |" in t for t in tasks)


def test_check_tag_only_verifies(run_playbook: Any) -> None:
    tasks = listed_tasks(run_playbook, "--tags", "check")
    assert any(t.startswith("dra_demo : Verify | summary") for t in tasks)
    assert any(t.startswith("dra_cluster : API | resource.k8s.io/v1 is served") for t in tasks)
    for part in (
        "Local | start",
        "Kind | create",
        "Image | build",
        "and DaemonSet (waits",
        "and Deployment (waits",
    ):
        assert not any(part in t for t in tasks), part
    assert not any(": Clean |" in t for t in tasks)


def test_clean_tag_removes_demo_then_driver_then_cluster(run_playbook: Any) -> None:
    tasks = listed_tasks(run_playbook, "--tags", "clean")
    demo = tasks.index("dra_demo : Clean | delete the Deployment")
    driver = tasks.index(
        "dra_driver : Clean | delete the DaemonSet and wait for its pods to be gone"
    )
    cluster = tasks.index("dra_cluster : Clean | stop the local cluster")
    assert demo < driver < cluster
    empty_check = "dra_demo : Verify | read each device file on its node"
    assert demo < tasks.index(empty_check, demo) < driver
    for part in ("Local | start", "Image | build", "and DaemonSet (waits", "Verify | summary"):
        assert not any(part in t for t in tasks), part
