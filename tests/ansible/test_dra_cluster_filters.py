"""Unit tests of roles/dra_cluster/filter_plugins (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "roles/dra_cluster/vars/main.yml").read_text()
)
CAP_NAMES = VARS["__dra_cluster_capability_names"]
TABLE = VARS["__dra_cluster_node_connections"]
# A status file as /proc/<pid>/status has it (abridged).
STATUS = "Name:\tdockerd\nCapInh:\t0000000000000000\nCapBnd:\t{bnd}\nCapAmb:\t0000000000000000\n"


def test_full_bounding_set_misses_nothing(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    status = STATUS.format(bnd="000001ffffffffff")  # bits 0..40
    assert filters.missing_capabilities(status, "40\n", CAP_NAMES) == {
        "known": True,
        "missing": [],
    }


def test_missing_cap_sys_resource_is_named(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    # This machine's case: every capability but CAP_SYS_RESOURCE (bit 24).
    status = STATUS.format(bnd=f"{(1 << 41) - 1 - (1 << 24):016x}")
    result = filters.missing_capabilities(status, "40", CAP_NAMES)
    assert result == {"known": True, "missing": ["cap_sys_resource"]}


def test_a_kernel_newer_than_the_name_table_names_the_bit(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    status = STATUS.format(bnd=f"{(1 << 41) - 1:016x}")  # 0..40 set, 41 and 42 not
    result = filters.missing_capabilities(status, "42", CAP_NAMES)
    assert result["missing"] == ["capability 41", "capability 42"]


@pytest.mark.parametrize(
    ("status", "cap_last"),
    [
        ("", "40"),  # dockerd's status not read (remote daemon)
        (STATUS.format(bnd="000001ffffffffff"), ""),  # cap_last_cap not read
        ("Name:\tdockerd\n", "40"),  # no CapBnd line
        (STATUS.format(bnd="zz"), "40"),  # not hexadecimal
        (None, None),
    ],
)
def test_unknown_inputs_give_unknown_not_a_guess(
    cluster_filters: ModuleType, status: str | None, cap_last: str | None
) -> None:
    filters = cluster_filters
    assert filters.missing_capabilities(status, cap_last, CAP_NAMES) == {
        "known": False,
        "missing": [],
    }


def _node(name: str, ready: str | None) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def test_ready_nodes(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    nodes = [_node("a", "True"), _node("b", "False"), _node("c", None), _node("d", "Unknown")]
    nodes.append({"metadata": {"name": "e"}})  # no status yet
    assert filters.ready_nodes(nodes) == ["a"]


def test_kind_nodes_are_their_containers(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    hosts = filters.node_hosts(["w2", "cp", "w1"], "kind-docker", TABLE)
    assert [host["name"] for host in hosts] == ["cp", "w1", "w2"]
    assert hosts[1]["vars"] == {
        "dra_node_name": "w1",
        "ansible_connection": "community.docker.docker",
        "ansible_host": "w1",
    }
    podman = filters.node_hosts(["w1"], "kind-podman", TABLE)
    assert podman[0]["vars"]["ansible_connection"] == "containers.podman.podman"
    assert podman[0]["vars"]["ansible_host"] == "w1"


def test_local_node_is_this_machine(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    assert filters.node_hosts(["dra-local-node"], "local", TABLE) == [
        {
            "name": "dra-local-node",
            "vars": {"dra_node_name": "dra-local-node", "ansible_connection": "local"},
        }
    ]


def test_namespaced_local_nodes_get_their_pid_and_only_those_are_added(
    cluster_filters: ModuleType,
) -> None:
    filters = cluster_filters
    status_nodes = [{"name": "n1", "pid": 101}, {"name": "n2", "pid": 202}]
    per_node = filters.per_node(status_nodes, "name", "pid", "ansible_nsenter_pid")
    hosts = filters.node_hosts(["n1", "n2", "n3"], "local-nsenter", TABLE, per_node)
    assert [(h["name"], h["vars"]["ansible_nsenter_pid"]) for h in hosts] == [
        ("n1", 101),
        ("n2", 202),
    ]
    assert {h["vars"]["ansible_connection"] for h in hosts} == {"community.docker.nsenter"}


def test_existing_nodes_through_the_pod_on_each_node(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    pods = [
        {"metadata": {"name": "drv-b"}, "spec": {"nodeName": "n1"}},
        {"metadata": {"name": "drv-a"}, "spec": {"nodeName": "n1"}},
        {"metadata": {"name": "drv-c"}, "spec": {"nodeName": "n2"}},
        {"metadata": {"name": "pending"}, "spec": {}},
    ]
    per_node = filters.per_node(pods, "spec.nodeName", "metadata.name", "ansible_kubectl_pod")
    assert per_node == {
        "n1": {"ansible_kubectl_pod": "drv-a"},
        "n2": {"ansible_kubectl_pod": "drv-c"},
    }
    table = {"existing-kubectl": {"ansible_connection": "kubernetes.core.kubectl"}}
    hosts = filters.node_hosts(["n1", "n2", "control"], "existing-kubectl", table, per_node)
    # A node without the pod cannot be entered, so it is not added.
    assert [h["name"] for h in hosts] == ["n1", "n2"]
    assert hosts[0]["vars"]["ansible_kubectl_pod"] == "drv-a"


def test_existing_inventory_keeps_the_users_connection(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    hosts = filters.node_hosts(["n1"], "existing-inventory", TABLE)
    assert hosts == [{"name": "n1", "vars": {"dra_node_name": "n1"}}]


def test_unknown_connection_is_a_clear_error(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    with pytest.raises(filters.NodeConnectionError, match="no node connection 'kind-lxc'"):
        filters.node_hosts(["n1"], "kind-lxc", TABLE)


def test_every_provider_has_a_connection_row() -> None:
    # resolve.yml maps each provider to one of these rows.
    rows = {
        "kind-docker",
        "kind-podman",
        "local",
        "local-nsenter",
        "existing-kubectl",
        "existing-inventory",
    }
    assert set(TABLE) == rows
