"""Unit tests of roles/dra_cluster/filter_plugins (no cluster needed)."""

from __future__ import annotations

import json
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


def test_all_nodes_ready(cluster_filters: ModuleType) -> None:
    filters = cluster_filters
    ready = [_node("a", "True"), _node("b", "True")]
    assert filters.all_nodes_ready(ready, 2)
    assert filters.all_nodes_ready(ready, "0")  # 0: as many as there are
    assert not filters.all_nodes_ready(ready, 3)  # one has not joined yet
    assert not filters.all_nodes_ready([*ready, _node("c", "False")], 2)
    assert not filters.all_nodes_ready([], 0)  # a cluster has at least one node


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


# ---- why kind cannot run on Docker, and what `auto` chooses ------------------

DOCKER_OK = {"ok": True, "error": ""}
KIND_OK = {"found": True, "version": "0.33.0", "executable": "kind", "error": ""}


def test_docker_with_kind_and_every_capability_has_no_problem(cluster_filters: ModuleType) -> None:
    assert cluster_filters.kind_docker_problems(DOCKER_OK, KIND_OK, "0.30.0", []) == []


@pytest.mark.parametrize(
    ("docker", "kind", "caps", "expected"),
    [
        (
            {"ok": False, "error": "socket not found"},
            KIND_OK,
            [],
            "the Docker daemon is not reachable (socket not found)",
        ),
        (
            DOCKER_OK,
            {"found": False, "executable": "kind", "error": "No such file"},
            [],
            "kind is not installed (kind: No such file)",
        ),
        (DOCKER_OK, {**KIND_OK, "version": "0.29.1"}, [], "kind 0.29.1 is older than 0.30.0"),
        (DOCKER_OK, {**KIND_OK, "version": "0.4.0"}, [], "kind 0.4.0 is older than 0.30.0"),
        (
            DOCKER_OK,
            KIND_OK,
            ["cap_sys_resource"],
            "dockerd lacks cap_sys_resource in its capability bounding set, "
            "so privileged containers (kind nodes) cannot start",
        ),
    ],
)
def test_each_docker_problem_is_named(
    cluster_filters: ModuleType,
    docker: dict[str, Any],
    kind: dict[str, Any],
    caps: list[str],
    expected: str,
) -> None:
    assert cluster_filters.kind_docker_problems(docker, kind, "0.30.0", caps) == [expected]


CAPS_MISSING = ["dockerd lacks cap_sys_resource in its capability bounding set"]
PODMAN_OK = {"ok": True, "problem": ""}
PODMAN_BROKEN = {"ok": False, "problem": "podman is not installed"}


def test_auto_prefers_kind_on_docker_and_does_not_need_podman(cluster_filters: ModuleType) -> None:
    choice = cluster_filters.choose_provider("auto", "auto", [], None)
    assert (choice["provider"], choice["runtime"]) == ("kind", "docker")
    assert choice["problems"] == {"docker": []}
    assert choice["message"].startswith("Provider kind (auto): Docker can run kind's")


def test_auto_falls_back_to_podman_and_says_why_not_docker(cluster_filters: ModuleType) -> None:
    choice = cluster_filters.choose_provider("auto", "auto", CAPS_MISSING, PODMAN_OK)
    assert (choice["provider"], choice["runtime"]) == ("kind", "podman")
    assert "podman can run kind's privileged node containers here" in choice["message"]
    assert "kind cannot run on Docker: dockerd lacks cap_sys_resource" in choice["message"]


def test_auto_falls_back_to_local_naming_every_reason(cluster_filters: ModuleType) -> None:
    choice = cluster_filters.choose_provider("auto", "auto", CAPS_MISSING, PODMAN_BROKEN)
    assert choice["provider"] == "local"
    assert choice["message"] == (
        "Provider local (auto), because kind cannot run here: on Docker: dockerd lacks "
        "cap_sys_resource in its capability bounding set, on podman: podman is not installed."
    )


def test_auto_provider_with_a_fixed_runtime_tries_only_that_runtime(
    cluster_filters: ModuleType,
) -> None:
    choice = cluster_filters.choose_provider("auto", "docker", CAPS_MISSING, PODMAN_OK)
    assert choice["provider"] == "local"
    assert choice["problems"] == {"docker": CAPS_MISSING}
    podman = cluster_filters.choose_provider("auto", "podman", [], PODMAN_OK)
    assert (podman["provider"], podman["runtime"]) == ("kind", "podman")


def test_kind_that_cannot_run_keeps_the_first_runtime_for_its_checks(
    cluster_filters: ModuleType,
) -> None:
    choice = cluster_filters.choose_provider("kind", "auto", CAPS_MISSING, PODMAN_BROKEN)
    assert (choice["provider"], choice["runtime"]) == ("kind", "docker")
    assert choice["problems"]["podman"] == ["podman is not installed"]


def test_an_explicit_provider_is_kept_whatever_the_probes_say(cluster_filters: ModuleType) -> None:
    for provider in ("local", "existing"):
        choice = cluster_filters.choose_provider(provider, "auto", [], PODMAN_OK)
        assert choice["provider"] == provider
        assert choice["message"] == f"Provider {provider}: set by dra_cluster_provider."
    kind = cluster_filters.choose_provider("kind", "auto", CAPS_MISSING, PODMAN_OK)
    assert kind["runtime"] == "podman"
    assert "kind's nodes run on podman (kind cannot run on Docker:" in kind["message"]


# ---- how many kind nodes this machine holds ----------------------------------

MEMINFO = "MemTotal:       24683584 kB\nMemFree:         1000000 kB\nMemAvailable:    {kib} kB\n"


def test_nodes_fit_while_memory_available_covers_them(cluster_filters: ModuleType) -> None:
    capacity = cluster_filters.kind_capacity(MEMINFO.format(kib=3 * 1024 * 1024), 3, 1024)
    assert capacity == {
        "fits": True,
        "nodes": 3,
        "max_nodes": 3,
        "available_mib": 3072,
        "needed_mib": 3072,
    }


def test_one_node_too_many_does_not_fit(cluster_filters: ModuleType) -> None:
    capacity = cluster_filters.kind_capacity(MEMINFO.format(kib=3 * 1024 * 1024 - 1), 3, 1024)
    assert capacity["fits"] is False
    assert capacity["max_nodes"] == 2


def test_unknown_memory_does_not_block(cluster_filters: ModuleType) -> None:
    capacity = cluster_filters.kind_capacity("MemTotal: 1 kB\n", 50, 1024)
    assert capacity["fits"] is True
    assert capacity["max_nodes"] is None


IMAGE_ID = "sha256:5d57fec7c477eb1ecfe9cb608bb21a41853d184ed3692fb2d99a90643c5439d6"


def _inspecti(
    node: str, rc: int, image_id: str | None = None, stdout: str | None = None
) -> dict[str, Any]:
    """One loop result of `crictl inspecti --quiet <image>` on `node` (raw)."""
    if stdout is None:
        stdout = (
            json.dumps({"status": {"id": image_id, "repoTags": ["docker.io/library/x:1"]}})
            if image_id
            else ""
        )
    return {"item": node, "rc": rc, "stdout": stdout}


def test_nodes_without_image_keeps_only_nodes_holding_that_id(cluster_filters: ModuleType) -> None:
    results = [
        _inspecti("cp", 0, IMAGE_ID),
        _inspecti("w1", 1),  # crictl: no such image
        _inspecti("w2", 0, "sha256:" + "0" * 64),  # same name, other content
        _inspecti("w3", 0, stdout="not json"),
        {"item": "w4", "skipped": True},
    ]
    assert cluster_filters.nodes_without_image(results, IMAGE_ID) == ["w1", "w2", "w3", "w4"]


def test_nodes_without_image_with_every_node_holding_it(cluster_filters: ModuleType) -> None:
    results = [_inspecti("cp", 0, IMAGE_ID), _inspecti("w1", 0, IMAGE_ID)]
    assert cluster_filters.nodes_without_image(results, IMAGE_ID) == []


def test_nodes_without_image_with_no_known_id_loads_everywhere(cluster_filters: ModuleType) -> None:
    # An unknown ID proves nothing: every node gets the archive.
    results = [_inspecti("cp", 0, IMAGE_ID)]
    assert cluster_filters.nodes_without_image(results, "") == ["cp"]


# ---- input rules ------------------------------------------------------------
PATTERNS = {
    "dns_label": VARS["__dra_cluster_dns_label_pattern"],
    "dns_subdomain": VARS["__dra_cluster_dns_subdomain_pattern"],
}
GOOD_INPUTS: dict[str, Any] = {
    "dra_cluster_provider": "auto",
    "dra_cluster_min_kubernetes_version": "1.34.0",
    "dra_cluster_nodes_ready_timeout": 300,
    "dra_cluster_kind_create_wait": 300,
    "dra_cluster_kind_name": "dra-demo",
    "dra_cluster_kind_workers": 2,
    "dra_cluster_kind_min_version": "0.30.0",
    "dra_cluster_kind_node_image": "",
    "dra_cluster_kind_feature_gates": {"DRAAdminAccess": True},
    "dra_cluster_local_feature_gates": {},
    "dra_cluster_kind_runtime_config": {"resource.k8s.io/v1beta2": "true", "api/all": False},
    "dra_cluster_kind_extra_mounts": [{"hostPath": "/a", "containerPath": "/b"}],
    "dra_cluster_local_command": ["/venv/bin/localcluster"],
    "dra_cluster_local_run_dir": "/var/lib/dra-localcluster",
    "dra_cluster_local_kubernetes_version": "v1.37.2",
    "dra_cluster_local_node_name": "dra-node",
    "dra_cluster_existing_kubeconfig": "",
}


def test_good_cluster_inputs_have_no_problem(cluster_filters: ModuleType) -> None:
    assert cluster_filters.input_problems(GOOD_INPUTS, PATTERNS) == []
    as_strings = {
        **GOOD_INPUTS,
        "dra_cluster_kind_workers": "0",
        "dra_cluster_kind_create_wait": "9",
    }
    assert cluster_filters.input_problems(as_strings, PATTERNS) == []
    tagged = {**GOOD_INPUTS, "dra_cluster_kind_node_image": "kindest/node:v1.34.0@sha256:ab"}
    assert cluster_filters.input_problems(tagged, PATTERNS) == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"dra_cluster_min_kubernetes_version": "1.33"}, "dra_cluster_min_kubernetes_version=1.33"),
        (
            {"dra_cluster_min_kubernetes_version": "v1.35"},
            "dra_cluster_min_kubernetes_version=v1.35",
        ),
        ({"dra_cluster_nodes_ready_timeout": 0}, "dra_cluster_nodes_ready_timeout=0"),
        ({"dra_cluster_kind_create_wait": "soon"}, "dra_cluster_kind_create_wait=soon"),
        ({"dra_cluster_kind_workers": -1}, "dra_cluster_kind_workers=-1"),
        ({"dra_cluster_kind_name": "DRA_demo"}, "dra_cluster_kind_name=DRA_demo"),
        ({"dra_cluster_kind_name": "a" * 50}, "a" * 50 + "-control-plane"),
        ({"dra_cluster_kind_min_version": "0.30"}, "dra_cluster_kind_min_version=0.30"),
        ({"dra_cluster_kind_node_image": "kindest/node:v1.33.1"}, "(found 1.33.1)"),
        ({"dra_cluster_kind_node_image": "kindest/node:latest"}, "(found no vX.Y.Z tag)"),
        (
            {"dra_cluster_kind_feature_gates": {"DRAAdminAccess": "yes"}},
            "dra_cluster_kind_feature_gates",
        ),
        (
            {"dra_cluster_local_feature_gates": {"dra-admin": True}},
            "dra_cluster_local_feature_gates",
        ),
        (
            {"dra_cluster_kind_runtime_config": {"resource.k8s.io/v1": "maybe"}},
            "dra_cluster_kind_runtime_config",
        ),
        (
            {"dra_cluster_kind_runtime_config": {"Resource/V1": "true"}},
            "dra_cluster_kind_runtime_config",
        ),
        ({"dra_cluster_kind_extra_mounts": [{"hostPath": "/a"}]}, "dra_cluster_kind_extra_mounts"),
        ({"dra_cluster_local_command": []}, "dra_cluster_local_command"),
        ({"dra_cluster_local_run_dir": "run"}, "dra_cluster_local_run_dir=run"),
        (
            {"dra_cluster_local_kubernetes_version": "v1.33.0"},
            "dra_cluster_local_kubernetes_version=v1.33.0",
        ),
        (
            {"dra_cluster_local_kubernetes_version": "1.37.2"},
            "dra_cluster_local_kubernetes_version=1.37.2",
        ),
        ({"dra_cluster_local_node_name": "Node_1"}, "dra_cluster_local_node_name=Node_1"),
        ({"dra_cluster_provider": "existing"}, "dra_cluster_existing_kubeconfig"),
    ],
)
def test_each_broken_cluster_rule_is_one_message_naming_it(
    cluster_filters: ModuleType, changes: dict[str, Any], named: str
) -> None:
    problems = cluster_filters.input_problems({**GOOD_INPUTS, **changes}, PATTERNS)
    assert len(problems) == 1, problems
    assert named in problems[0]


def test_versions_are_compared_as_numbers(cluster_filters: ModuleType) -> None:
    # 1.100 is later than 1.34 (a string comparison would say otherwise), and a
    # higher minimum applies to the local and kind node versions.
    later = {**GOOD_INPUTS, "dra_cluster_min_kubernetes_version": "1.100"}
    problems = cluster_filters.input_problems(later, PATTERNS)
    assert [p.split("=")[0] for p in problems] == ["dra_cluster_local_kubernetes_version"]


def test_kind_node_names(cluster_filters: ModuleType) -> None:
    assert cluster_filters.kind_node_names("d", 0) == ["d-control-plane"]
    assert cluster_filters.kind_node_names("d", 1) == ["d-control-plane", "d-worker"]
    assert cluster_filters.kind_node_names("d", 3) == ["d-control-plane", "d-worker3"]
