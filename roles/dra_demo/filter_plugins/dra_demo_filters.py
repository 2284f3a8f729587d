"""Filters of the dra_demo role: the rules of its inputs that the argument
specification cannot express, and the joins of what the API says (slices,
pods, claims) and what the node files hold, as plain functions with unit
tests (tests/ansible/test_dra_demo_filters.py) instead of Jinja loops.

Rows are plain dicts, so tasks can pass them on to assert and debug.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

Resource = Mapping[str, Any]

# Inputs that name Kubernetes objects (DNS subdomains).
OBJECT_NAME_INPUTS = (
    "dra_demo_device_class_name",
    "dra_demo_claim_template_name",
    "dra_demo_deployment_name",
)


def _number(value: Any) -> int | None:
    """An integer input as given (`-e name=value` passes strings), or None."""
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def input_problems(inputs: Mapping[str, Any], patterns: Mapping[str, str]) -> list[str]:
    """What is wrong with dra_demo's inputs, one message per rule broken, each
    naming the variable to fix; [] when nothing is. `patterns` holds the
    Kubernetes name patterns (vars/main.yml): dns_label, dns_subdomain."""
    problems = []
    replicas = _number(inputs["dra_demo_replicas"])
    if replicas is None or replicas < 0:
        problems.append(
            f"dra_demo_replicas={inputs['dra_demo_replicas']} must be 0 (one per node that offers"
            " files) or more."
        )
    timeout = _number(inputs["dra_demo_wait_timeout"])
    if timeout is None or timeout <= 0:
        problems.append(
            f"dra_demo_wait_timeout={inputs['dra_demo_wait_timeout']} must be a positive number"
            " of seconds."
        )
    namespace = str(inputs["dra_demo_namespace"])
    if not re.match(patterns["dns_label"], namespace):
        problems.append(
            f"dra_demo_namespace={namespace} is not a valid namespace name (DNS label)."
        )
    for variable in OBJECT_NAME_INPUTS:
        name = str(inputs[variable])
        if not re.match(patterns["dns_subdomain"], name):
            problems.append(
                f"{variable}={name} is not a valid Kubernetes object name (DNS subdomain)."
            )
    return problems


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    """obj[path[0]][path[1]]..., or default where a key is missing or null."""
    for key in path:
        if not isinstance(obj, Mapping) or obj.get(key) is None:
            return default
        obj = obj[key]
    return obj


def file_lines(text: str | None) -> list[str]:
    """The pod names a device file holds: its non-empty lines, trimmed."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def device_offer(slices: Iterable[Resource], file_dir: str) -> list[dict[str, Any]]:
    """The devices the driver published: one row {node, device, path, shared}
    per device, sorted by node and device."""
    rows = []
    for slice_ in slices:
        node = _get(slice_, "spec", "nodeName") or _get(slice_, "spec", "pool", "name", default="")
        for device in _get(slice_, "spec", "devices", default=[]):
            name = device["name"]
            rows.append(
                {
                    "node": node,
                    "device": name,
                    "path": _get(device, "attributes", "path", "string") or f"{file_dir}/{name}",
                    "shared": bool(_get(device, "attributes", "shared", "bool", default=False)),
                }
            )
    return sorted(rows, key=lambda row: (row["node"], row["device"]))


def device_capacity(offer: list[Mapping[str, Any]]) -> int | str:
    """How many claims the offer can hold at once: 'unlimited' when a device is
    shared, else one per device."""
    if any(row["shared"] for row in offer):
        return "unlimited"
    return len(offer)


def _ready(pod: Resource) -> bool:
    conditions = _get(pod, "status", "conditions", default=[])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _readiness_command(pod: Resource, container: str) -> list[str] | None:
    for spec in _get(pod, "spec", "containers", default=[]):
        if spec.get("name") == container:
            command = _get(spec, "readinessProbe", "exec", "command")
            return list(command) if command is not None else None
    return None


def pod_rows(pods: Iterable[Resource], container: str = "app") -> list[dict[str, Any]]:
    """The demo pods as rows {name, node, phase, terminating, ready, probe},
    sorted by name: `ready` is the pod's Ready condition, `probe` the exec
    command of the readiness probe of its container `container` (None without
    one), which is what that readiness stands for."""
    rows = [
        {
            "name": pod["metadata"]["name"],
            "node": _get(pod, "spec", "nodeName", default=""),
            "phase": _get(pod, "status", "phase", default="Unknown"),
            "terminating": _get(pod, "metadata", "deletionTimestamp") is not None,
            "ready": _ready(pod),
            "probe": _readiness_command(pod, container),
        }
        for pod in pods
    ]
    return sorted(rows, key=lambda row: row["name"])


def allocations(
    pods: Iterable[Resource],
    claims: Iterable[Resource],
    offer: list[Mapping[str, Any]],
    *,
    driver: str,
    pod_claim_name: str,
    file_dir: str,
) -> list[dict[str, Any]]:
    """Join pods, their claims and the devices allocated to those claims.

    One row {pod, node, pool, own_pool, device, path} per device of `driver`
    allocated to a live (not terminating) pod through its claim named
    `pod_claim_name`; own_pool says the device came from the pool of the pod's
    own node. Sorted by pod name.
    """
    claims_by_name = {claim["metadata"]["name"]: claim for claim in claims}
    paths = {(row["node"], row["device"]): row["path"] for row in offer}
    rows = []
    for pod in sorted(pods, key=lambda pod: pod["metadata"]["name"]):
        if _get(pod, "metadata", "deletionTimestamp") is not None:
            continue
        node = _get(pod, "spec", "nodeName", default="")
        for status in _get(pod, "status", "resourceClaimStatuses", default=[]):
            if status.get("name") != pod_claim_name:
                continue
            claim = claims_by_name.get(status.get("resourceClaimName") or "", {})
            for result in _get(claim, "status", "allocation", "devices", "results", default=[]):
                if result.get("driver") != driver:
                    continue
                device = result["device"]
                rows.append(
                    {
                        "pod": pod["metadata"]["name"],
                        "node": node,
                        "pool": result["pool"],
                        "own_pool": result["pool"] == node,
                        "device": device,
                        "path": paths.get((node, device), f"{file_dir}/{device}"),
                    }
                )
    return rows


def expected_files(
    allocs: Iterable[Mapping[str, Any]], offer: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What every device file must hold: one row {node, device, path, pods}
    per offered device, pods sorted (empty when nothing is allocated there)."""
    pods: dict[tuple[str, str], list[str]] = {}
    for row in allocs:
        pods.setdefault((row["node"], row["device"]), []).append(row["pod"])
    return [
        {
            "node": row["node"],
            "device": row["device"],
            "path": row["path"],
            "pods": sorted(pods.get((row["node"], row["device"]), [])),
        }
        for row in offer
    ]


def holds_exactly(text: str | None, pods: Iterable[str]) -> bool:
    """Whether the file text lists exactly these pod names, in any order (the
    `until:` of every node-file read)."""
    return sorted(file_lines(text)) == sorted(pods)


def file_contents(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The node files as read by a loop over expected_files rows: one row
    {node, device, path, lines} per loop result (stdout of `cat`)."""
    return [
        {
            "node": result["item"]["node"],
            "device": result["item"]["device"],
            "path": result["item"]["path"],
            "lines": file_lines(result.get("stdout")),
        }
        for result in results
    ]


def summary_table(files: Iterable[Mapping[str, Any]]) -> list[str]:
    """Aligned text lines NODE DEVICE FILE PODS, one per device file."""
    rows = [("NODE", "DEVICE", "FILE", "PODS")] + [
        (f["node"], f["device"], f["path"], ", ".join(f["lines"]) or "(empty)") for f in files
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]


class FilterModule:
    """dra_demo's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dra_demo_input_problems": input_problems,
            "dra_demo_file_lines": file_lines,
            "dra_demo_device_offer": device_offer,
            "dra_demo_device_capacity": device_capacity,
            "dra_demo_pod_rows": pod_rows,
            "dra_demo_allocations": allocations,
            "dra_demo_expected_files": expected_files,
            "dra_demo_holds_exactly": holds_exactly,
            "dra_demo_file_contents": file_contents,
            "dra_demo_summary_table": summary_table,
        }
