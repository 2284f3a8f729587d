"""Invalid inputs fail before any change, with a message naming the variable.

Each case runs the real `ansible-playbook playbooks/site.yml` with one bad
input and checks that the run fails, that the output names the variable,
that no task of the bring-up ran and nothing changed (changed=0), and that
the artifacts directory was not created. As a safety net, should a check
ever regress, the kind and localcluster commands point at nothing, so the
bring-up could not get far anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# Bring-up tasks: none of them may run when an input is invalid.
BRING_UP_MARKERS = (
    "TASK [dra_cluster : Kind |",
    "TASK [dra_cluster : Local |",
    "TASK [dra_cluster : API |",
    "TASK [dra_driver : Image |",
    "TASK [dra_driver : Driver |",
    "TASK [dra_demo : Demo |",
)

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
contexts:
  - name: demo
    context:
      cluster: nowhere
      user: nobody
current-context: demo
users:
  - name: nobody
    user:
      token: not-a-token
"""

# Replaced by the path of a kubeconfig written from KUBECONFIG above.
A_KUBECONFIG = "<kubeconfig>"

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("provider-choice", {"dra_cluster_provider": "docker"}, ["dra_cluster_provider"]),
    ("kind-workers-type", {"dra_cluster_kind_workers": "two"}, ["dra_cluster_kind_workers"]),
    ("kind-workers-negative", {"dra_cluster_kind_workers": -1}, ["dra_cluster_kind_workers"]),
    (
        "kind-node-image-too-old",
        {"dra_cluster_kind_node_image": "kindest/node:v1.33.1"},
        ["dra_cluster_kind_node_image", "1.34"],
    ),
    (
        "kind-node-image-untagged",
        {"dra_cluster_kind_node_image": "kindest/node:latest"},
        ["dra_cluster_kind_node_image"],
    ),
    ("kind-name", {"dra_cluster_kind_name": "DRA_demo"}, ["dra_cluster_kind_name"]),
    (
        "kind-node-name-too-long",
        {"dra_cluster_kind_name": "a" * 50},
        ["dra_cluster_kind_name", "not DNS labels", "a" * 50 + "-control-plane"],
    ),
    (
        "kind-node-name-dot",
        {"dra_cluster_kind_name": "dra.demo"},
        ["dra_cluster_kind_name", "dra.demo-control-plane"],
    ),
    (
        "kind-nodes-over-memory",
        {"dra_cluster_provider": "kind", "dra_cluster_kind_workers": 100000},
        ["dra_cluster_kind_workers=100000", "MemAvailable", "node(s) fit"],
    ),
    (
        "kind-feature-gate-value",
        {"dra_cluster_kind_feature_gates": {"DRAAdminAccess": "yes"}},
        ["dra_cluster_kind_feature_gates"],
    ),
    (
        "kind-feature-gate-name",
        {"dra_cluster_kind_feature_gates": {"dra-admin-access": True}},
        ["dra_cluster_kind_feature_gates"],
    ),
    (
        "local-feature-gate-value",
        {"dra_cluster_local_feature_gates": {"DRAConsumableCapacity": "on"}},
        ["dra_cluster_local_feature_gates"],
    ),
    (
        "local-feature-gate-name",
        {"dra_cluster_local_feature_gates": {"DRAConsumableCapacity=true": True}},
        ["dra_cluster_local_feature_gates"],
    ),
    (
        "kind-runtime-config-value",
        {"dra_cluster_kind_runtime_config": {"resource.k8s.io/v1beta2": "maybe"}},
        ["dra_cluster_kind_runtime_config"],
    ),
    (
        "kind-extra-mount-typo",
        {
            "dra_cluster_kind_extra_mounts": [
                {"hostPath": "/a", "containerPath": "/b", "readonly": True}
            ]
        },
        ["dra_cluster_kind_extra_mounts", "readonly"],
    ),
    (
        "local-version-too-old",
        {"dra_cluster_local_kubernetes_version": "v1.33.0"},
        ["dra_cluster_local_kubernetes_version"],
    ),
    ("local-run-dir-relative", {"dra_cluster_local_run_dir": "run"}, ["dra_cluster_local_run_dir"]),
    (
        "local-binaries-unknown",
        {"dra_cluster_local_binaries": "mirror"},
        ["dra_cluster_local_binaries", "auto, download, build"],
    ),
    (
        "existing-without-kubeconfig",
        {"dra_cluster_provider": "existing"},
        ["dra_cluster_existing_kubeconfig"],
    ),
    (
        "existing-kubeconfig-missing",
        {
            "dra_cluster_provider": "existing",
            "dra_cluster_existing_kubeconfig": "/nonexistent/kubeconfig",
        },
        ["dra_cluster_existing_kubeconfig"],
    ),
    (
        "existing-context-missing",
        {
            "dra_cluster_provider": "existing",
            "dra_cluster_existing_kubeconfig": A_KUBECONFIG,
            "dra_cluster_existing_context": "nope",
        },
        ["dra_cluster_existing_context", "nope"],
    ),
    (
        "existing-without-registry",
        {"dra_cluster_provider": "existing", "dra_cluster_existing_kubeconfig": A_KUBECONFIG},
        ["dra_driver_registry"],
    ),
    ("driver-file-count", {"dra_driver_file_count": 0}, ["dra_driver_file_count"]),
    ("driver-name", {"dra_driver_name": "File_Driver"}, ["dra_driver_name"]),
    ("driver-log-format", {"dra_driver_log_format": "xml"}, ["dra_driver_log_format"]),
    ("driver-ports-clash", {"dra_driver_metrics_port": 8081}, ["dra_driver_metrics_port"]),
    (
        "driver-ca-bundle-missing",
        {"dra_driver_extra_ca_bundle": "/nonexistent/ca.pem"},
        ["dra_driver_extra_ca_bundle"],
    ),
    (
        "driver-registry-url",
        {"dra_driver_registry": "https://registry.example.com/"},
        ["dra_driver_registry"],
    ),
    ("demo-replicas-negative", {"dra_demo_replicas": -1}, ["dra_demo_replicas"]),
    (
        "demo-replicas-over-local-capacity",
        {"dra_cluster_provider": "local", "dra_demo_replicas": 2},
        ["dra_demo_replicas"],
    ),
    (
        "demo-replicas-over-kind-capacity",
        {"dra_cluster_provider": "kind", "dra_cluster_kind_workers": 2, "dra_demo_replicas": 4},
        ["dra_demo_replicas"],
    ),
    (
        "demo-pull-policy",
        {"dra_demo_image_pull_policy": "Sometimes"},
        ["dra_demo_image_pull_policy"],
    ),
    ("demo-namespace", {"dra_demo_namespace": "Demo"}, ["dra_demo_namespace"]),
]


@pytest.mark.parametrize(
    ("bad_vars", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_input_fails_before_any_change(
    run_playbook: Any,
    tmp_path: Path,
    safety_net: dict[str, Any],
    bad_vars: dict[str, Any],
    expected: list[str],
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    variables = dict(safety_net)
    variables.update(
        {
            key: str(kubeconfig) if value == A_KUBECONFIG else value
            for key, value in bad_vars.items()
        }
    )

    result = run_playbook("playbooks/site.yml", "--extra-vars", json.dumps(variables))

    assert result.returncode != 0, result.output
    for text in expected:
        assert text in result.output, f"{text!r} not in the output:\n{result.output}"
    assert result.recap["changed"] == 0, result.output
    assert result.recap["failed"] == 1, result.output
    for marker in BRING_UP_MARKERS:
        assert marker not in result.output, f"bring-up task ran: {marker}\n{result.output}"
    assert not (tmp_path / "artifacts").exists()


# `-e name=value` passes strings: the checks must still compare numbers.
KEY_VALUE_CASES = [
    ("dra_driver_file_count=0", "dra_driver_file_count"),
    ("dra_cluster_provider=local dra_demo_replicas=2", "dra_demo_replicas"),
    ("dra_cluster_kind_workers=-1", "dra_cluster_kind_workers"),
    ("dra_driver_metrics_port=8081", "dra_driver_metrics_port"),
    ("dra_demo_wait_timeout=0", "dra_demo_wait_timeout"),
]


@pytest.mark.parametrize(("assignment", "variable"), KEY_VALUE_CASES)
def test_key_value_inputs_are_checked_as_numbers(
    run_playbook: Any, safety_net: dict[str, Any], assignment: str, variable: str
) -> None:
    result = run_playbook(
        "playbooks/site.yml",
        "--extra-vars",
        json.dumps(safety_net),
        "--extra-vars",
        assignment,
    )
    assert result.returncode != 0, result.output
    assert variable in result.output
    assert "not supported between instances" not in result.output
    assert result.recap["changed"] == 0, result.output
    for marker in BRING_UP_MARKERS:
        assert marker not in result.output, f"bring-up task ran: {marker}\n{result.output}"


def test_default_inputs_pass_the_input_phase(
    run_playbook: Any, tmp_path: Path, safety_net: dict[str, Any]
) -> None:
    """The control case: with defaults, every input check passes.

    `--tags always` runs the input phase (and each role's own input checks)
    and nothing else, so this changes nothing either.
    """
    result = run_playbook(
        "playbooks/site.yml", "--tags", "always", "--extra-vars", json.dumps(safety_net)
    )
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 0, result.output
    assert "Provider | say which provider is used and why" in result.output
    assert not (tmp_path / "artifacts").exists()
