"""`--tags check` cannot leave damage: its scale-down proof runs in a block
whose `always:` restores the declared replicas, whatever fails in between.

Cluster-backed (the local cluster, brought up by site.yml itself, with the
session's test cluster out of the way meanwhile): run under
`flock /tmp/dra-cluster.lock`. The middle of the proof is replaced by a task
file that fails after the probe scaled down (tests/ansible/tasks/); the run
must fail, the restore must have run, the Deployment must be back at its
declared replicas, and a following `--tags check` must pass with changed=0.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
FAILING_MIDDLE = REPO / "tests" / "ansible" / "tasks" / "fail_in_scale_down.yml"
KUBECONFIG = Path("/var/lib/dra-localcluster/kubeconfig")

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _build_settings() -> list[str]:
    """The image build settings scripts/bootstrap chose (as scripts/demo passes them)."""
    build_env = REPO / ".artifacts" / "build-env"
    lines = build_env.read_text().splitlines() if build_env.exists() else []
    settings = dict(line.split("=", 1) for line in lines if "=" in line)
    args = ["-e", "dra_cluster_provider=local"]
    for name, variable in (
        ("DRA_DRIVER_BASE_IMAGE", "dra_driver_base_image"),
        ("DRA_DRIVER_EXTRA_CA_BUNDLE", "dra_driver_extra_ca_bundle"),
    ):
        value = os.environ.get(name, settings.get(name, "")).strip().strip('"')
        args += ["-e", f"{variable}={value}"]
    return args


def _declared_replicas() -> tuple[int, int]:
    """(spec.replicas, ready replicas) of the demo Deployment."""
    api = client.AppsV1Api(config.new_client_from_config(str(KUBECONFIG), context="localcluster"))
    deployment: Any = api.read_namespaced_deployment("dra-test-deployment", "dra-demo")
    return deployment.spec.replicas, deployment.status.ready_replicas or 0


@pytest.fixture(scope="module")
def converged(run_playbook: Any, test_cluster_stopped: None) -> Iterator[list[str]]:
    settings = _build_settings()
    result = run_playbook("playbooks/site.yml", *settings, timeout=1800)
    try:
        assert result.returncode == 0, result.output
        yield settings
    finally:
        clean = run_playbook("playbooks/site.yml", "--tags", "clean", *settings, timeout=900)
        assert clean.returncode == 0, clean.output


def test_a_failure_inside_the_scale_down_proof_restores_the_replicas(
    run_playbook: Any, converged: list[str]
) -> None:
    declared, ready = _declared_replicas()
    assert declared >= 1
    assert ready == declared

    failed = run_playbook(
        "playbooks/site.yml",
        "--tags",
        "check",
        *converged,
        "-e",
        f"__dra_demo_scale_down_checks={FAILING_MIDDLE}",
    )
    assert failed.returncode != 0, failed.output
    assert f"had scaled dra-test-deployment to {declared - 1} replica(s)" in failed.output, (
        failed.output
    )
    assert "TASK [dra_demo : Verify | restore the declared replicas]" in failed.output
    assert failed.recap["failed"] == 1, failed.output
    # The probe was undone: no net change to report.
    assert failed.recap["changed"] == 0, failed.output

    assert _declared_replicas() == (declared, declared)

    # The demo is whole again: the full verification passes and changes nothing.
    again = run_playbook("playbooks/site.yml", "--tags", "check", *converged)
    assert again.returncode == 0, again.output
    assert again.recap["changed"] == 0, again.output
