"""Filters of the dra_cluster role, as plain functions with unit tests
(tests/ansible/test_dra_cluster_filters.py):

- what is wrong with the role's inputs (the rules the argument specification
  cannot express), each message naming the variable;
- which capabilities dockerd lacks (decoding /proc/<pid>/status's CapBnd);
- why kind cannot run on Docker here, and which provider and container
  runtime `auto` chooses from the probes (and why);
- how many kind nodes this machine's memory holds;
- how many nodes report Ready;
- which nodes lack an image (by image ID, from `crictl inspecti`);
- the inventory entry of every cluster node: the connection that reaches it,
  chosen here and only here from the node connection table in vars/main.yml.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any


class NodeConnectionError(ValueError):
    """The node connection table has no entry for a provider."""


def missing_capabilities(
    proc_status: str | None, cap_last_cap: str | int | None, names: list[str]
) -> dict[str, Any]:
    """Capabilities the kernel has (0..cap_last_cap) that a process's bounding
    set lacks, by name ("capability N" past the end of `names`).

    `proc_status` is the text of /proc/<pid>/status. Returns {known, missing}:
    known is false (and missing empty) when either input is absent or
    unreadable, as for a remote Docker daemon.
    """
    bounding = None
    for line in (proc_status or "").splitlines():
        if line.startswith("CapBnd:"):
            try:
                bounding = int(line.split()[-1], 16)
            except (IndexError, ValueError):
                bounding = None
    try:
        last = int(str(cap_last_cap).strip())
    except ValueError:
        last = -1
    if bounding is None or last < 0:
        return {"known": False, "missing": []}
    missing = [
        names[bit] if bit < len(names) else f"capability {bit}"
        for bit in range(last + 1)
        if not bounding >> bit & 1
    ]
    return {"known": True, "missing": missing}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def kind_docker_problems(
    docker: Mapping[str, Any],
    kind: Mapping[str, Any],
    kind_min_version: str,
    missing_caps: Iterable[str],
) -> list[str]:
    """Why kind cannot run its nodes on Docker here ([] when it can).

    docker: {ok, error} of the Docker daemon probe; kind: {found, version,
    executable, error} of `kind version`; missing_caps: capabilities dockerd's
    bounding set lacks (privileged containers then fail "unable to apply caps").
    """
    problems = []
    if not docker.get("ok"):
        problems.append(
            f"the Docker daemon is not reachable ({docker.get('error') or 'no answer'})"
        )
    if not kind.get("found"):
        problems.append(
            f"kind is not installed ({kind.get('executable')}: {kind.get('error') or 'not found'})"
        )
    elif _version(str(kind.get("version", "0"))) < _version(kind_min_version):
        problems.append(f"kind {kind.get('version')} is older than {kind_min_version}")
    missing = list(missing_caps)
    if missing:
        problems.append(
            f"dockerd lacks {', '.join(missing)} in its capability bounding set, "
            "so privileged containers (kind nodes) cannot start"
        )
    return problems


_RUNTIME_LABELS = {"docker": "Docker", "podman": "podman"}


def choose_provider(
    provider: str,
    runtime: str,
    docker_problems: Iterable[str],
    podman: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The provider and kind's container runtime this run uses, and why.

    provider: auto | kind | local | existing (dra_cluster_provider); runtime:
    auto | docker | podman (dra_cluster_kind_runtime). docker_problems: from
    kind_docker_problems; podman: `kind_cluster probe`'s answer {ok, problem},
    None when it was not probed (Docker was enough). `auto` runtimes try
    Docker, then podman; the `auto` provider takes kind on the first runtime
    that can run kind's nodes, else local. Returns {provider, runtime,
    problems: {runtime: [reasons]}, message}; runtime is the one kind uses
    (for kind that cannot run, the first one tried: its checks then fail
    with these reasons).
    """
    candidates = ["docker", "podman"] if runtime == "auto" else [runtime]
    problems: dict[str, list[str]] = {}
    for candidate in candidates:
        if candidate == "docker":
            problems["docker"] = list(docker_problems)
        elif podman is not None:
            problems["podman"] = [] if podman.get("ok") else [str(podman.get("problem"))]
        else:
            problems["podman"] = ["podman was not probed"]
        if not problems[candidate]:
            break
    usable = [candidate for candidate in problems if not problems[candidate]]
    chosen_runtime = usable[0] if usable else candidates[0]

    def failed(candidate: str) -> str:
        return f"on {_RUNTIME_LABELS[candidate]}: {'; '.join(problems[candidate])}"

    refused = [failed(c) for c in problems if problems[c]]
    if provider != "auto":
        chosen = provider
        message = f"Provider {provider}: set by dra_cluster_provider."
        if provider == "kind" and usable:
            message += f" kind's nodes run on {_RUNTIME_LABELS[chosen_runtime]}"
            message += f" (kind cannot run {', '.join(refused)})." if refused else "."
    elif usable:
        chosen = "kind"
        message = (
            f"Provider kind (auto): {_RUNTIME_LABELS[chosen_runtime]} can run kind's "
            "privileged node containers here"
        )
        message += f"; kind cannot run {', '.join(refused)}." if refused else "."
    else:
        chosen = "local"
        message = f"Provider local (auto), because kind cannot run here: {', '.join(refused)}."
    return {
        "provider": chosen,
        "runtime": chosen_runtime,
        "problems": problems,
        "message": message,
    }


def kind_capacity(meminfo: str, nodes: int, node_mib: int) -> dict[str, Any]:
    """Whether `nodes` kind nodes of about `node_mib` MiB each fit this machine.

    meminfo is the text of /proc/meminfo; MemAvailable (memory that can be
    had without swapping) is the limit. Returns {fits, nodes, max_nodes,
    available_mib, needed_mib}; fits is true when MemAvailable is unknown.
    """
    available_kib = None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                available_kib = int(fields[1])
    needed_mib = nodes * node_mib
    if available_kib is None:
        return {
            "fits": True,
            "nodes": nodes,
            "max_nodes": None,
            "available_mib": None,
            "needed_mib": needed_mib,
        }
    available_mib = available_kib // 1024
    max_nodes = available_mib // node_mib
    return {
        "fits": nodes <= max_nodes,
        "nodes": nodes,
        "max_nodes": max_nodes,
        "available_mib": available_mib,
        "needed_mib": needed_mib,
    }


def ready_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the nodes whose Ready condition is True."""
    return [
        node["metadata"]["name"]
        for node in nodes
        if any(
            condition.get("type") == "Ready" and condition.get("status") == "True"
            for condition in (node.get("status") or {}).get("conditions") or []
        )
    ]


def all_nodes_ready(nodes: list[Mapping[str, Any]], expected: Any) -> bool:
    """Whether the cluster has at least `expected` nodes (and at least one),
    and every node it has is Ready: the state site.yml waits for."""
    least = max(_number(expected) or 0, 1)
    return len(nodes) >= least and len(ready_nodes(nodes)) == len(nodes)


def node_hosts(
    node_names: Iterable[str],
    connection: str,
    table: Mapping[str, Mapping[str, Any]],
    node_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The inventory entry of every node: {name, vars}.

    `connection` names a row of `table` (vars/main.yml's
    __dra_cluster_node_connections). The row's values are host variables in
    which "{node}" stands for the node's name (e.g. the container that is the
    node); `node_vars` adds per-node values over them (a pod name, a PID).
    When `node_vars` is given, only the nodes it names get an entry (a row
    that needs a pod or a PID per node cannot reach the others). Every entry
    also carries dra_node_name, the Kubernetes node name, so plays on the
    group never depend on how the host is reached.
    """
    if connection not in table:
        raise NodeConnectionError(
            f"no node connection '{connection}' (known: {', '.join(sorted(table))})"
        )
    row = table[connection]
    extra = node_vars or {}
    if node_vars is not None:
        node_names = [name for name in node_names if name in node_vars]
    return [
        {
            "name": name,
            "vars": {
                "dra_node_name": name,
                **{
                    key: value.replace("{node}", name) if isinstance(value, str) else value
                    for key, value in row.items()
                },
                **extra.get(name, {}),
            },
        }
        for name in sorted(node_names)
    ]


def _dig(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def per_node(
    rows: Iterable[Mapping[str, Any]], node_key: str, value_key: str, var_name: str
) -> dict[str, dict[str, Any]]:
    """{node: {var_name: value}} from rows such as pods or `localcluster status`
    nodes; keys are dotted paths (spec.nodeName). Rows without a node or value
    are skipped; for two rows of one node the first by value wins (stable)."""
    found: dict[str, dict[str, Any]] = {}
    pairs = [(_dig(row, node_key), _dig(row, value_key)) for row in rows]
    for node, value in sorted(
        ((n, v) for n, v in pairs if n and v is not None), key=lambda pair: str(pair[1])
    ):
        found.setdefault(node, {var_name: value})
    return found


def _checked_version(text: Any, pattern: str) -> tuple[int, ...] | None:
    """The numbers of a version that matches `pattern` (digits and dots after
    an optional 'v'), or None."""
    if not isinstance(text, str) or not re.match(pattern, text):
        return None
    return tuple(int(part) for part in text.lstrip("v").split("."))


def _at_least(version: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    """version >= minimum, a missing part counting as 0 (1.34 == 1.34.0)."""
    width = max(len(version), len(minimum))
    return version + (0,) * (width - len(version)) >= minimum + (0,) * (width - len(minimum))


def _number(value: Any) -> int | None:
    """An integer input as given (`-e name=value` passes strings), or None."""
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def kind_node_names(name: str, workers: int) -> list[str]:
    """The node (and host) names kind gives a cluster: <name>-control-plane,
    <name>-worker, <name>-worker2, ... (the last one decides the length)."""
    names = [f"{name}-control-plane"]
    if workers > 0:
        names.append(f"{name}-worker{workers if workers > 1 else ''}")
    return names


def input_problems(inputs: Mapping[str, Any], patterns: Mapping[str, str]) -> list[str]:
    """What is wrong with dra_cluster's inputs, one message per rule broken,
    each naming the variable to fix; [] when nothing is.

    `inputs` holds the role's variables by name, `patterns` the Kubernetes
    name patterns (vars/main.yml): dns_label, dns_subdomain.
    """
    minimum_text = inputs["dra_cluster_min_kubernetes_version"]
    minimum = _checked_version(minimum_text, r"^[0-9]+[.][0-9]+([.][0-9]+)?$")
    problems = []
    if minimum is None or not _at_least(minimum, (1, 34)):
        problems.append(
            f"dra_cluster_min_kubernetes_version={minimum_text} must be a version X.Y[.Z] of 1.34"
            " or later (resource.k8s.io/v1, the DRA API the demo uses, is served from 1.34)."
        )
    for variable in ("dra_cluster_nodes_ready_timeout", "dra_cluster_kind_create_wait"):
        number = _number(inputs[variable])
        if number is None or number <= 0:
            problems.append(f"{variable}={inputs[variable]} must be a positive number of seconds.")
    if (
        inputs["dra_cluster_provider"] == "existing"
        and not inputs["dra_cluster_existing_kubeconfig"]
    ):
        problems.append(
            "dra_cluster_provider=existing needs dra_cluster_existing_kubeconfig (the kubeconfig"
            " file of the cluster) and optionally dra_cluster_existing_context."
        )
    return (
        problems
        + _kind_problems(inputs, patterns, minimum)
        + _feature_gate_problems(inputs)
        + _local_problems(inputs, patterns, minimum)
    )


def _kind_problems(
    inputs: Mapping[str, Any], patterns: Mapping[str, str], minimum: tuple[int, ...] | None
) -> list[str]:
    problems = []
    workers = _number(inputs["dra_cluster_kind_workers"])
    if workers is None or workers < 0:
        problems.append(
            f"dra_cluster_kind_workers={inputs['dra_cluster_kind_workers']} must be 0 or more"
            " (0 = the control plane alone runs the workloads)."
        )
    kind_name = str(inputs["dra_cluster_kind_name"])
    bad_names = [
        node
        for node in kind_node_names(kind_name, max(workers or 0, 0))
        if not re.match(patterns["dns_label"], node)
    ]
    if bad_names:
        problems.append(
            f"dra_cluster_kind_name={kind_name} gives node names that are not DNS labels"
            f" ({', '.join(bad_names)}): use lower-case letters, digits and '-', starting and"
            f" ending with a letter or digit, at most {63 - len('-control-plane')} characters."
        )
    kind_min = inputs["dra_cluster_kind_min_version"]
    if _checked_version(kind_min, r"^[0-9]+[.][0-9]+[.][0-9]+$") is None:
        problems.append(f"dra_cluster_kind_min_version={kind_min} must look like 0.30.0.")
    node_image = str(inputs["dra_cluster_kind_node_image"])
    if node_image:
        tag = re.search(r":v([0-9]+[.][0-9]+[.][0-9]+)", node_image)
        found = tuple(int(part) for part in tag.group(1).split(".")) if tag else None
        if found is None or (minimum is not None and not _at_least(found, minimum)):
            problems.append(
                f"dra_cluster_kind_node_image={node_image} must carry a tag vX.Y.Z of Kubernetes"
                f" {inputs['dra_cluster_min_kubernetes_version']} or later"
                f" (found {tag.group(1) if tag else 'no vX.Y.Z tag'}),"
                " e.g. kindest/node:v1.37.0@sha256:... ."
            )
    runtime_config = inputs["dra_cluster_kind_runtime_config"]
    if not isinstance(runtime_config, Mapping) or any(
        not (key == "api/all" or re.match(r"^[a-z0-9.-]+/[a-z0-9]+$", str(key)))
        or str(value).lower() not in ("true", "false")
        for key, value in runtime_config.items()
    ):
        problems.append(
            "dra_cluster_kind_runtime_config must map API group/versions (e.g."
            ' resource.k8s.io/v1beta2) to "true" or "false"'
            f" (got {json.dumps(runtime_config)})."
        )
    mounts = inputs["dra_cluster_kind_extra_mounts"]
    if any(
        not PurePosixPath(str(mount.get("containerPath", ""))).is_absolute() for mount in mounts
    ):
        problems.append(
            "dra_cluster_kind_extra_mounts needs an absolute containerPath in every entry."
        )
    return problems


def _feature_gate_problems(inputs: Mapping[str, Any]) -> list[str]:
    problems = []
    for variable in ("dra_cluster_kind_feature_gates", "dra_cluster_local_feature_gates"):
        gates = inputs[variable]
        if not isinstance(gates, Mapping) or any(
            not re.match(r"^[A-Z][A-Za-z0-9]*$", str(gate)) or not isinstance(value, bool)
            for gate, value in gates.items()
        ):
            problems.append(
                f"{variable} must map feature gate names (e.g. DRAConsumableCapacity) to true or"
                f" false (got {json.dumps(gates)})."
            )
    return problems


def _local_problems(
    inputs: Mapping[str, Any], patterns: Mapping[str, str], minimum: tuple[int, ...] | None
) -> list[str]:
    problems = []
    if len(inputs["dra_cluster_local_command"]) == 0:
        problems.append(
            "dra_cluster_local_command must be a non-empty argv prefix,"
            " e.g. ['/path/to/venv/bin/localcluster']."
        )
    run_dir = str(inputs["dra_cluster_local_run_dir"])
    if not PurePosixPath(run_dir).is_absolute():
        problems.append(f"dra_cluster_local_run_dir={run_dir} must be an absolute path.")
    text = inputs["dra_cluster_local_kubernetes_version"]
    version = _checked_version(text, r"^v[0-9]+[.][0-9]+[.][0-9]+$")
    if version is None or (minimum is not None and not _at_least(version, minimum)):
        problems.append(
            f"dra_cluster_local_kubernetes_version={text} must look like v1.37.2 and be"
            f" {inputs['dra_cluster_min_kubernetes_version']} or later."
        )
    node_name = str(inputs["dra_cluster_local_node_name"])
    if not re.match(patterns["dns_subdomain"], node_name):
        problems.append(
            f"dra_cluster_local_node_name={node_name} is not a valid Kubernetes node name."
        )
    return problems


def nodes_without_image(results: Iterable[Mapping[str, Any]], image_id: str) -> list[str]:
    """The nodes (loop items) whose `crictl inspecti --quiet` result does not
    show `image_id`, the ID (config digest) of the image in the local Docker
    daemon: no such image on the node (rc != 0), an answer that is not
    crictl's JSON, or the name holding other content. Skipped items (no rc)
    count as lacking it, so nothing is taken as loaded unless a node said so.
    """
    missing = []
    for result in results:
        node = str(result["item"])
        found = None
        if result.get("rc") == 0:
            try:
                found = json.loads(result.get("stdout") or "")["status"]["id"]
            except (ValueError, KeyError, TypeError):
                found = None
        if not image_id or found != image_id:
            missing.append(node)
    return missing


class FilterModule:
    """dra_cluster's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dra_cluster_input_problems": input_problems,
            "dra_cluster_missing_capabilities": missing_capabilities,
            "dra_cluster_kind_docker_problems": kind_docker_problems,
            "dra_cluster_choose_provider": choose_provider,
            "dra_cluster_kind_capacity": kind_capacity,
            "dra_cluster_ready_nodes": ready_nodes,
            "dra_cluster_all_nodes_ready": all_nodes_ready,
            "dra_cluster_node_hosts": node_hosts,
            "dra_cluster_per_node": per_node,
            "dra_cluster_nodes_without_image": nodes_without_image,
        }
