"""Filters of the dra_cluster role, as plain functions with unit tests
(tests/ansible/test_dra_cluster_filters.py):

- which capabilities dockerd lacks (decoding /proc/<pid>/status's CapBnd);
- how many nodes report Ready;
- the inventory entry of every cluster node: the connection that reaches it,
  chosen here and only here from the node connection table in vars/main.yml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


class FilterModule:
    """dra_cluster's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dra_cluster_missing_capabilities": missing_capabilities,
            "dra_cluster_ready_nodes": ready_nodes,
            "dra_cluster_node_hosts": node_hosts,
            "dra_cluster_per_node": per_node,
        }
