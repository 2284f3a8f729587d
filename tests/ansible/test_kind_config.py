"""The dra_cluster role's kind config, checked against kind's own types.

kind cannot run on the CI machines (no image can be pulled, no privileged
container can start), so the kind path is checked statically: the role's
template is rendered through Ansible, with default and with non-default
inputs, and decoded by tools/kind-config-check, which uses kind's
v1alpha4.Cluster type and kind's strict decoding (unknown fields fail).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KIND_CONFIG_CHECK = REPO / "tools" / "kind-config-check"
DEFAULT_IMAGE_PREFIX = "kindest/node:v1.37.0@sha256:"


def render(run_playbook: Any, dest: Path, **extra_vars: Any) -> Any:
    variables = {"dra_cluster_kind_config_path": str(dest), **extra_vars}
    return run_playbook(
        "tests/ansible/render_kind_config.yml", "--extra-vars", json.dumps(variables)
    )


def check(binary: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def test_default_config_is_valid_for_kind(
    run_playbook: Any, kind_config_check: Path, tmp_path: Path
) -> None:
    config = tmp_path / "kind.yaml"
    result = render(run_playbook, config)
    assert result.returncode == 0, result.output

    checked = check(kind_config_check, config)
    assert checked.returncode == 0, checked.stderr

    doc = yaml.safe_load(config.read_text())
    assert doc["kind"] == "Cluster"
    assert doc["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert doc["name"] == "dra-demo"
    assert [node["role"] for node in doc["nodes"]] == ["control-plane", "worker", "worker"]
    assert all(node["image"].startswith(DEFAULT_IMAGE_PREFIX) for node in doc["nodes"])
    assert "enable_cdi = true" in doc["containerdConfigPatches"][0]
    assert "featureGates" not in doc
    assert "runtimeConfig" not in doc


def test_non_default_config_is_valid_for_kind(
    run_playbook: Any, kind_config_check: Path, tmp_path: Path
) -> None:
    config = tmp_path / "custom.yaml"
    mounts = [
        {
            "hostPath": "/srv/dra",
            "containerPath": "/etc/dra",
            "readOnly": False,
            "propagation": "HostToContainer",
        },
        {
            "hostPath": "/srv/certs",
            "containerPath": "/usr/local/share/ca-certificates/extra",
            "readOnly": True,
            "selinuxRelabel": True,
        },
    ]
    result = render(
        run_playbook,
        config,
        dra_cluster_kind_name="dra-custom.1",
        dra_cluster_kind_node_image="kindest/node:v1.34.0",
        dra_cluster_kind_workers=4,
        dra_cluster_kind_feature_gates={"DRAConsumableCapacity": True, "DRADeviceTaints": False},
        dra_cluster_kind_runtime_config={"resource.k8s.io/v1beta2": True, "api/all": "false"},
        dra_cluster_kind_containerd_config_patches=[
            '[plugins."io.containerd.grpc.v1.cri"]\n  enable_cdi = true\n',
            '[plugins."io.containerd.grpc.v1.cri".registry]\n'
            '  config_path = "/etc/containerd/certs.d"',
        ],
        dra_cluster_kind_extra_mounts=mounts,
    )
    assert result.returncode == 0, result.output

    checked = check(kind_config_check, config)
    assert checked.returncode == 0, checked.stderr
    assert "5 nodes, 4 workers, 2 feature gates, 2 runtimeConfig entries" in checked.stdout

    doc = yaml.safe_load(config.read_text())
    assert doc["name"] == "dra-custom.1"
    assert doc["featureGates"] == {"DRAConsumableCapacity": True, "DRADeviceTaints": False}
    # kind's runtimeConfig is map[string]string: booleans must arrive as strings.
    assert doc["runtimeConfig"] == {"resource.k8s.io/v1beta2": "true", "api/all": "false"}
    assert len(doc["containerdConfigPatches"]) == 2
    assert doc["containerdConfigPatches"][1].endswith('config_path = "/etc/containerd/certs.d"')
    assert [node["role"] for node in doc["nodes"]] == ["control-plane"] + ["worker"] * 4
    for node in doc["nodes"]:
        assert node["image"] == "kindest/node:v1.34.0"
        assert node["extraMounts"] == mounts


def test_control_plane_only_config_is_valid_for_kind(
    run_playbook: Any, kind_config_check: Path, tmp_path: Path
) -> None:
    config = tmp_path / "single.yaml"
    result = render(
        run_playbook,
        config,
        dra_cluster_kind_workers=0,
        dra_cluster_kind_containerd_config_patches=[],
    )
    assert result.returncode == 0, result.output
    checked = check(kind_config_check, config)
    assert checked.returncode == 0, checked.stderr
    doc = yaml.safe_load(config.read_text())
    assert [node["role"] for node in doc["nodes"]] == ["control-plane"]
    assert "containerdConfigPatches" not in doc


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("top-level typo", "field featureGate not found"),
        ("mount typo", "field readonly not found"),
        ("node typo", "field extraMount not found"),
        ("unknown role", "not a valid node role"),
        ("wrong type", "cannot unmarshal"),
    ],
)
def test_typo_in_rendered_config_fails_the_check(
    run_playbook: Any, kind_config_check: Path, tmp_path: Path, mutation: str, expected: str
) -> None:
    config = tmp_path / "kind.yaml"
    mounts = [{"hostPath": "/srv/dra", "containerPath": "/etc/dra", "readOnly": True}]
    result = render(
        run_playbook,
        config,
        dra_cluster_kind_feature_gates={"DRAConsumableCapacity": True},
        dra_cluster_kind_extra_mounts=mounts,
    )
    assert result.returncode == 0, result.output
    assert check(kind_config_check, config).returncode == 0

    text = config.read_text()
    mutated = {
        "top-level typo": text.replace("featureGates:", "featureGate:"),
        "mount typo": text.replace("readOnly:", "readonly:"),
        "node typo": text.replace("extraMounts:", "extraMount:"),
        "unknown role": text.replace("role: worker", "role: master"),
        "wrong type": text.replace("readOnly: true", "readOnly: maybe"),
    }[mutation]
    assert mutated != text
    config.write_text(mutated)

    checked = check(kind_config_check, config)
    assert checked.returncode == 1
    assert expected in checked.stderr


def test_unknown_mount_field_is_refused_before_rendering(run_playbook: Any, tmp_path: Path) -> None:
    config = tmp_path / "kind.yaml"
    result = render(
        run_playbook,
        config,
        dra_cluster_kind_extra_mounts=[
            {"hostPath": "/srv/dra", "containerPath": "/etc/dra", "readonly": True}
        ],
    )
    assert result.returncode != 0
    assert "dra_cluster_kind_extra_mounts" in result.output
    assert "readonly" in result.output
    assert not config.exists()


def test_kind_config_check_go_tests() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed")
    completed = subprocess.run(
        [go, "test", "./..."],
        cwd=KIND_CONFIG_CHECK,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
