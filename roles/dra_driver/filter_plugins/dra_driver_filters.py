"""Filters of the dra_driver role: the rules of its inputs that the argument
specification cannot express, and reading the driver's ResourceSlices, as
plain functions with unit tests (tests/ansible/test_dra_driver_filters.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

Resource = Mapping[str, Any]

IMAGE_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _number(value: Any) -> int | None:
    """An integer input as given (`-e name=value` passes strings), or None."""
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def input_problems(inputs: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
    """What is wrong with dra_driver's inputs, one message per rule broken,
    each naming the variable to fix; [] when nothing is.

    `inputs` holds the role's variables by name; `limits` the driver's limits
    and name patterns (vars/main.yml): name_max, file_count_max, attribute_max,
    dns_label, dns_subdomain. Files are not looked at here (validate.yml).
    """
    problems = []
    name = str(inputs["dra_driver_name"])
    if len(name) > int(limits["name_max"]) or not re.match(limits["dns_subdomain"], name):
        problems.append(
            f"dra_driver_name={name} is not a valid DRA driver name (a lower-case DNS subdomain"
            f" of at most {limits['name_max']} characters, e.g. file.dra.example.com)."
        )
    namespace = str(inputs["dra_driver_namespace"])
    if not re.match(limits["dns_label"], namespace):
        problems.append(
            f"dra_driver_namespace={namespace} is not a valid namespace name (DNS label)."
        )
    count = _number(inputs["dra_driver_file_count"])
    if count is None or not 1 <= count <= int(limits["file_count_max"]):
        problems.append(
            f"dra_driver_file_count={inputs['dra_driver_file_count']} must be between 1"
            f" and {limits['file_count_max']}."
        )
    file_dir = str(inputs["dra_driver_file_dir"])
    last_file = f"{file_dir}/file{inputs['dra_driver_file_count']}"
    if not PurePosixPath(file_dir).is_absolute() or len(last_file) > int(limits["attribute_max"]):
        problems.append(
            f"dra_driver_file_dir={file_dir} must be an absolute path, and {last_file} at most"
            f" {limits['attribute_max']} characters (a ResourceSlice attribute's limit)."
        )
    problems += _port_problems(inputs["dra_driver_health_port"], inputs["dra_driver_metrics_port"])
    timeout = _number(inputs["dra_driver_wait_timeout"])
    if timeout is None or timeout <= 0:
        problems.append(
            f"dra_driver_wait_timeout={inputs['dra_driver_wait_timeout']} must be a positive"
            " number of seconds."
        )
    return problems + _image_problems(inputs)


def _port_problems(health_port: Any, metrics_port: Any) -> list[str]:
    health, metrics = _number(health_port), _number(metrics_port)
    if (
        health is not None
        and metrics is not None
        and 1 <= health <= 65535
        and 0 <= metrics <= 65535
        and health != metrics
    ):
        return []
    return [
        f"dra_driver_health_port={health_port} must be 1-65535, dra_driver_metrics_port="
        f"{metrics_port} 0 (off) or 1-65535, and they must differ."
    ]


def _image_problems(inputs: Mapping[str, Any]) -> list[str]:
    problems = []
    image_name = str(inputs["dra_driver_image_name"])
    if not IMAGE_REPOSITORY.match(image_name):
        problems.append(
            f"dra_driver_image_name={image_name} is not a valid image repository name"
            " (lower case, no tag)."
        )
    registry = str(inputs["dra_driver_registry"])
    if "://" in registry or registry.endswith("/"):
        problems.append(
            f"dra_driver_registry={registry} must look like registry.example.com[:port][/path]"
            " (no scheme, no trailing '/')."
        )
    if inputs["dra_driver_image_via_registry"] and not (registry or inputs["dra_driver_image"]):
        problems.append(
            "The nodes of this cluster pull their images (an existing cluster): they cannot see a"
            " locally built image. Set dra_driver_registry (a registry to push it to) or"
            " dra_driver_image (an image the nodes can already pull)."
        )
    return problems


def devices_by_node(slices: Iterable[Resource]) -> dict[str, list[str]]:
    """Device names each node published, over all its slices, sorted."""
    published: dict[str, list[str]] = {}
    for slice_ in slices:
        spec = slice_.get("spec") or {}
        names = [device["name"] for device in spec.get("devices") or []]
        published.setdefault(spec.get("nodeName") or "", []).extend(names)
    return {node: sorted(names) for node, names in published.items()}


def nodes_without_slice(
    slices: Iterable[Resource], nodes: Iterable[str], file_count: int
) -> list[str]:
    """The nodes that have not (yet) published exactly file1..file<file_count>."""
    wanted = sorted(f"file{number}" for number in range(1, int(file_count) + 1))
    published = devices_by_node(slices)
    return sorted(node for node in nodes if published.get(node) != wanted)


def exclusive_devices(slices: Iterable[Resource]) -> list[str]:
    """Names of published devices without allowMultipleAllocations: true."""
    names = {
        device["name"]
        for slice_ in slices
        for device in (slice_.get("spec") or {}).get("devices") or []
        if device.get("allowMultipleAllocations") is not True
    }
    return sorted(names)


def pod_nodes(pods: Iterable[Resource]) -> list[str]:
    """The nodes the given pods are scheduled on, sorted, once each."""
    nodes = {(pod.get("spec") or {}).get("nodeName") for pod in pods}
    return sorted(node for node in nodes if isinstance(node, str) and node)


def applied_objects(applied: Mapping[str, Any], kind: str) -> list[Any]:
    """The objects of kind `kind` as a kubernetes.core.k8s task left them (after
    its wait): that module returns one object under `result`, or, given several
    definitions, one entry per definition under `result.results`."""
    result = applied.get("result") or {}
    several = result.get("results")
    if isinstance(several, list):
        objects = [entry.get("result") for entry in several if isinstance(entry, Mapping)]
    else:
        objects = [result]
    return [obj for obj in objects if isinstance(obj, Mapping) and obj.get("kind") == kind]


class FilterModule:
    """dra_driver's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dra_driver_input_problems": input_problems,
            "dra_driver_devices_by_node": devices_by_node,
            "dra_driver_nodes_without_slice": nodes_without_slice,
            "dra_driver_exclusive_devices": exclusive_devices,
            "dra_driver_pod_nodes": pod_nodes,
            "dra_driver_applied_objects": applied_objects,
        }
