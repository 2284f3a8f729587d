"""Filters of the dra_driver role: reading the driver's ResourceSlices, as
plain functions with unit tests (tests/ansible/test_dra_driver_filters.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

Resource = Mapping[str, Any]


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


def context_manifest(files: Iterable[Mapping[str, Any]], source_dir: str, ignored: str) -> str:
    """One line per build-context file (relative path, mode, checksum), sorted,
    skipping paths that match the regular expression `ignored`: the image tag
    is a hash of it, so it changes exactly when the context does."""
    skip = re.compile(ignored)
    lines = []
    for file in files:
        relative = os.path.relpath(file["path"], source_dir)
        if skip.search(relative):
            continue
        lines.append(f"{relative} {file['mode']} {file['checksum']};")
    return "".join(sorted(lines))


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
            "dra_driver_devices_by_node": devices_by_node,
            "dra_driver_nodes_without_slice": nodes_without_slice,
            "dra_driver_exclusive_devices": exclusive_devices,
            "dra_driver_pod_nodes": pod_nodes,
            "dra_driver_context_manifest": context_manifest,
            "dra_driver_applied_objects": applied_objects,
        }
