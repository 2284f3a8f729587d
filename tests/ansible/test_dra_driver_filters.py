"""Unit tests of roles/dra_driver/filter_plugins (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

DRIVER_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "roles/dra_driver/vars/main.yml").read_text()
)


def _slice(node: str, *devices: str, shared: bool | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for name in devices:
        device: dict[str, Any] = {"name": name}
        if shared is not None:
            device["allowMultipleAllocations"] = shared
        entries.append(device)
    return {"spec": {"nodeName": node, "pool": {"name": node}, "devices": entries}}


def test_devices_by_node_joins_all_slices_of_a_node(driver_filters: ModuleType) -> None:
    slices = [_slice("n1", "file2"), _slice("n1", "file1"), _slice("n2", "file1")]
    assert driver_filters.devices_by_node(slices) == {
        "n1": ["file1", "file2"],
        "n2": ["file1"],
    }


def test_nodes_without_slice(driver_filters: ModuleType) -> None:
    slices = [_slice("n1", "file1", "file2"), _slice("n2", "file1"), _slice("n4", "file9")]
    # n2 has too few devices, n3 none, n4 the wrong ones; a slice of a node
    # the driver does not run on (n5) does not count.
    missing = driver_filters.nodes_without_slice(slices, ["n1", "n2", "n3", "n4"], 2)
    assert missing == ["n2", "n3", "n4"]
    assert driver_filters.nodes_without_slice(slices, ["n1"], "2") == []
    assert driver_filters.nodes_without_slice([], [], 1) == []


def test_exclusive_devices(driver_filters: ModuleType) -> None:
    slices = [
        _slice("n1", "file1", shared=True),
        _slice("n2", "file1", shared=False),
        _slice("n3", "file2"),
    ]
    assert driver_filters.exclusive_devices(slices) == ["file1", "file2"]
    assert driver_filters.exclusive_devices([_slice("n1", "file1", shared=True)]) == []


def test_pod_nodes(driver_filters: ModuleType) -> None:
    pods = [
        {"spec": {"nodeName": "b"}},
        {"spec": {"nodeName": "a"}},
        {"spec": {"nodeName": "b"}},
        {"spec": {}},  # not scheduled yet
    ]
    assert driver_filters.pod_nodes(pods) == ["a", "b"]


def test_applied_objects_of_one_or_several_definitions(driver_filters: ModuleType) -> None:
    daemonset = {"kind": "DaemonSet", "metadata": {"name": "d"}, "status": {"numberReady": 2}}
    namespace = {"kind": "Namespace", "metadata": {"name": "n"}}
    several = {
        "changed": False,
        "result": {
            "results": [
                {"changed": False, "method": "apply", "result": namespace},
                {"changed": False, "method": "apply", "result": daemonset},
            ]
        },
    }
    one = {"changed": False, "method": "apply", "result": daemonset}
    assert driver_filters.applied_objects(several, "DaemonSet") == [daemonset]
    assert driver_filters.applied_objects(several, "Namespace") == [namespace]
    assert driver_filters.applied_objects(one, "DaemonSet") == [daemonset]
    assert driver_filters.applied_objects(one, "Namespace") == []
    # A skipped task has no result.
    assert driver_filters.applied_objects({"skipped": True}, "DaemonSet") == []


# ---- input rules ------------------------------------------------------------
LIMITS = {
    "name_max": DRIVER_VARS["__dra_driver_name_max"],
    "file_count_max": DRIVER_VARS["__dra_driver_file_count_max"],
    "attribute_max": DRIVER_VARS["__dra_driver_attribute_max"],
    "dns_label": DRIVER_VARS["__dra_driver_dns_label_pattern"],
    "dns_subdomain": DRIVER_VARS["__dra_driver_dns_subdomain_pattern"],
}
GOOD_INPUTS: dict[str, Any] = {
    "dra_driver_name": "file.dra.example.com",
    "dra_driver_namespace": "dra-system",
    "dra_driver_file_count": 4,
    "dra_driver_file_dir": "/etc/dra",
    "dra_driver_health_port": 8081,
    "dra_driver_metrics_port": 8080,
    "dra_driver_wait_timeout": 300,
    "dra_driver_image_name": "dra-file-driver",
    "dra_driver_registry": "",
    "dra_driver_image": "",
    "dra_driver_image_via_registry": False,
}


def test_good_inputs_have_no_problem(driver_filters: ModuleType) -> None:
    assert driver_filters.input_problems(GOOD_INPUTS, LIMITS) == []
    # -e name=value passes strings: numbers are read as numbers.
    as_strings = {**GOOD_INPUTS, "dra_driver_file_count": "4", "dra_driver_metrics_port": "0"}
    assert driver_filters.input_problems(as_strings, LIMITS) == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"dra_driver_name": "File_Driver"}, "dra_driver_name=File_Driver"),
        ({"dra_driver_name": "a" * 64}, "dra_driver_name="),
        ({"dra_driver_namespace": "Dra"}, "dra_driver_namespace=Dra"),
        ({"dra_driver_file_count": 0}, "dra_driver_file_count=0"),
        ({"dra_driver_file_count": "many"}, "dra_driver_file_count=many"),
        ({"dra_driver_file_count": 1025}, "dra_driver_file_count=1025"),
        ({"dra_driver_file_dir": "etc/dra"}, "dra_driver_file_dir=etc/dra"),
        ({"dra_driver_file_dir": "/" + "d" * 60}, "dra_driver_file_dir=/ddd"),
        ({"dra_driver_metrics_port": 8081}, "dra_driver_metrics_port=8081"),
        ({"dra_driver_health_port": 0}, "dra_driver_health_port=0"),
        ({"dra_driver_metrics_port": 70000}, "dra_driver_metrics_port=70000"),
        ({"dra_driver_wait_timeout": "0"}, "dra_driver_wait_timeout=0"),
        ({"dra_driver_image_name": "Dra:1"}, "dra_driver_image_name=Dra:1"),
        (
            {"dra_driver_registry": "https://r.example.com"},
            "dra_driver_registry=https://r.example.com",
        ),
        ({"dra_driver_registry": "r.example.com/"}, "dra_driver_registry=r.example.com/"),
        ({"dra_driver_image_via_registry": True}, "Set dra_driver_registry"),
    ],
)
def test_each_broken_rule_is_one_message_naming_the_variable(
    driver_filters: ModuleType, changes: dict[str, Any], named: str
) -> None:
    problems = driver_filters.input_problems({**GOOD_INPUTS, **changes}, LIMITS)
    assert len(problems) == 1, problems
    assert named in problems[0]


def test_every_broken_rule_is_reported_at_once(driver_filters: ModuleType) -> None:
    bad = {**GOOD_INPUTS, "dra_driver_namespace": "X", "dra_driver_wait_timeout": -1}
    problems = driver_filters.input_problems(bad, LIMITS)
    assert [p.split("=")[0] for p in problems] == [
        "dra_driver_namespace",
        "dra_driver_wait_timeout",
    ]


def test_a_registry_or_a_given_image_serves_nodes_that_pull(driver_filters: ModuleType) -> None:
    pulling = {**GOOD_INPUTS, "dra_driver_image_via_registry": True}
    assert (
        driver_filters.input_problems(
            {**pulling, "dra_driver_registry": "r.example.com:5000/x"}, LIMITS
        )
        == []
    )
    assert (
        driver_filters.input_problems({**pulling, "dra_driver_image": "r.example.com/d:1"}, LIMITS)
        == []
    )
