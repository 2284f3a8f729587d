"""Unit tests of roles/dra_driver/filter_plugins (no cluster needed)."""

from __future__ import annotations

from types import ModuleType
from typing import Any


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


def test_context_manifest_lists_files_sorted_and_skips_caches(driver_filters: ModuleType) -> None:
    root = "/src/driver"
    files = [
        {"path": f"{root}/pkg/b.py", "mode": "0644", "checksum": "bb"},
        {"path": f"{root}/Dockerfile", "mode": "0644", "checksum": "dd"},
        {"path": f"{root}/pkg/__pycache__/b.cpython-311.pyc", "mode": "0644", "checksum": "x"},
        {"path": f"{root}/extra-ca.pem", "mode": "0644", "checksum": "y"},
    ]
    ignored = r"(^|/)__pycache__/|\.py[co]$|(^|/)extra-ca[^/]*\.pem$"
    manifest = driver_filters.context_manifest(files, root, ignored)
    assert manifest == "Dockerfile 0644 dd;pkg/b.py 0644 bb;"
    # A changed file changes the manifest (and so the image tag).
    files[0]["checksum"] = "b2"
    assert driver_filters.context_manifest(files, root + "/", ignored) != manifest


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
