"""Feature gates: one map, parsed from the components' own syntax, given to every component."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcluster import cli, components, featuregates
from localcluster.binaries import Binaries
from localcluster.layout import RunLayout
from localcluster.pytest_plugin import feature_gates_for_tests
from localcluster.versions import KubernetesVersion

GATES = {"DRAConsumableCapacity": True, "DRAPartitionableDevices": False}


def test_component_syntax_round_trips() -> None:
    text = " DRAPartitionableDevices=FALSE , DRAConsumableCapacity=true,"
    assert featuregates.parse(text) == GATES
    assert featuregates.render(GATES) == (
        "DRAConsumableCapacity=true,DRAPartitionableDevices=false"
    )
    assert featuregates.parse(featuregates.render(GATES)) == GATES


def test_no_gates_means_no_flag_and_no_field() -> None:
    assert featuregates.parse("") == {}
    assert featuregates.flags({}) == []
    assert featuregates.flags(GATES) == [f"--feature-gates={featuregates.render(GATES)}"]
    assert featuregates.config_fields({}) == {}
    assert featuregates.config_fields(GATES) == {"featureGates": GATES}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DRAConsumableCapacity", "not NAME=true or NAME=false"),
        ("DRAConsumableCapacity=yes", "not NAME=true or NAME=false"),
        ("draConsumableCapacity=true", "not a gate name"),
        ("DRA-Capacity=true", "not a gate name"),
        ("=true", "not a gate name"),
        ("A=true,A=false", "set twice"),
    ],
)
def test_malformed_settings_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(featuregates.FeatureGateError, match=message):
        featuregates.parse(text)


def test_the_cli_names_a_malformed_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--feature-gates", "DRAConsumableCapacity=on", "status"]) == 1
    assert "'DRAConsumableCapacity=on' is not NAME=true or NAME=false" in capsys.readouterr().err


@pytest.fixture
def binaries(tmp_path: Path) -> Binaries:
    """Placeholder executables: these tests read command lines, they run nothing."""
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (tmp_path / name).touch()
    return Binaries(kubernetes=tmp_path, etcd=tmp_path, containerd=tmp_path, pause=tmp_path)


def test_every_kubernetes_component_gets_the_same_gates(tmp_path: Path, binaries: Binaries) -> None:
    layout = RunLayout(tmp_path / "run")
    flag = f"--feature-gates={featuregates.render(GATES)}"
    for factory in (
        components.kube_apiserver,
        components.kube_controller_manager,
        components.kube_scheduler,
    ):
        assert flag in factory(layout, binaries, GATES).argv
        assert not any(a.startswith("--feature-gates") for a in factory(layout, binaries, {}).argv)
    # The kubelet and kube-proxy are configured by file; their flag is deprecated.
    for config in (
        components.kubelet_config(layout, GATES),
        components.kube_proxy_config(layout, "node", GATES),
    ):
        assert json.loads(config)["featureGates"] == GATES
    for config in (
        components.kubelet_config(layout, {}),
        components.kube_proxy_config(layout, "node", {}),
    ):
        assert "featureGates" not in json.loads(config)


def test_the_test_cluster_turns_on_shared_devices_where_the_release_leaves_them_off() -> None:
    on = {"DRAConsumableCapacity": True}
    assert feature_gates_for_tests(KubernetesVersion.parse("v1.34.4")) == on
    assert feature_gates_for_tests(KubernetesVersion.parse("v1.35.4")) == on
    assert feature_gates_for_tests(KubernetesVersion.parse("v1.36.1")) == {}
    assert feature_gates_for_tests(KubernetesVersion.parse("v1.37.2")) == {}
