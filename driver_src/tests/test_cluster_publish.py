"""ResourceSlice publishing against the real API server (real validation, real watch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from dra_file_driver import publisher
from dra_file_driver.devices import inventory

from .cluster_kit import DRIVER, GROUP, VERSION, StartProcess, list_slices, node_uid
from .driver_testkit import wait_for

pytestmark = pytest.mark.cluster


def published(api: Any, node: str, device_count: int) -> list[dict[str, Any]]:
    """Wait until the node's pool is complete with device_count devices; return its slices."""
    found: list[dict[str, Any]] = []

    def complete() -> bool:
        found[:] = list_slices(api, node)
        if not found:
            return False
        counts = {s["spec"]["pool"]["resourceSliceCount"] for s in found}
        generations = {s["spec"]["pool"]["generation"] for s in found}
        devices = sum(len(s["spec"]["devices"]) for s in found)
        return counts == {len(found)} and len(generations) == 1 and devices == device_count

    wait_for(complete, 60, f"{device_count} published devices on {node}")
    return sorted(found, key=lambda s: s["spec"]["devices"][0]["attributes"]["index"]["int"])


def test_slice_is_accepted_and_owned_by_the_node(
    admin_api: Any, node: str, driver_process: StartProcess
) -> None:
    proc = driver_process("--file-count", "2")
    (slice_obj,) = published(admin_api, node, 2)
    assert slice_obj["metadata"]["ownerReferences"] == [
        publisher.node_owner_reference(node, node_uid(admin_api, node))
    ]
    generation = slice_obj["spec"]["pool"]["generation"]
    (expected,) = publisher.build_slice_specs(
        DRIVER, node, inventory(proc.file_dir, 2), False, generation
    )
    assert slice_obj["spec"] == expected


def test_deleted_slice_is_recreated(
    admin_api: Any, node: str, driver_process: StartProcess
) -> None:
    driver_process()
    (first,) = published(admin_api, node, 1)
    # What the kubelet does to every slice of its node when it starts.
    client.CustomObjectsApi(admin_api).delete_cluster_custom_object(
        GROUP, VERSION, "resourceslices", first["metadata"]["name"]
    )
    wait_for(
        lambda: (
            [s["metadata"]["name"] for s in list_slices(admin_api, node)]
            not in ([], [first["metadata"]["name"]])
        ),
        60,
        "a re-created slice",
    )
    (second,) = published(admin_api, node, 1)
    assert second["spec"]["pool"]["generation"] > first["spec"]["pool"]["generation"]


def test_changed_slice_is_repaired(admin_api: Any, node: str, driver_process: StartProcess) -> None:
    driver_process("--file-count", "3")
    (original,) = published(admin_api, node, 3)
    tampered = {
        **original,
        "spec": {**original["spec"], "devices": original["spec"]["devices"][:1]},
    }
    client.CustomObjectsApi(admin_api).replace_cluster_custom_object(
        GROUP, VERSION, "resourceslices", original["metadata"]["name"], tampered
    )
    (repaired,) = published(admin_api, node, 3)
    assert repaired["spec"]["devices"] == original["spec"]["devices"]
    assert repaired["spec"]["pool"]["generation"] > original["spec"]["pool"]["generation"]


def test_shared_devices_keep_allow_multiple_allocations(
    admin_api: Any, node: str, driver_process: StartProcess
) -> None:
    driver_process("--shared")
    (slice_obj,) = published(admin_api, node, 1)
    assert slice_obj["spec"]["devices"][0]["allowMultipleAllocations"] is True


def test_large_inventory_is_one_pool_of_several_slices(
    admin_api: Any, node: str, driver_process: StartProcess, base_dir: Path
) -> None:
    driver_process("--file-count", "130")
    slices = published(admin_api, node, 130)
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 2]
    assert {s["spec"]["pool"]["name"] for s in slices} == {node}


def test_restart_keeps_an_up_to_date_slice(
    admin_api: Any, node: str, driver_process: StartProcess
) -> None:
    first_process = driver_process()
    (before,) = published(admin_api, node, 1)
    assert first_process.stop() == 0
    second_process = driver_process()
    (after,) = published(admin_api, node, 1)
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "created ResourceSlice" not in second_process.log()
    assert "updated ResourceSlice" not in second_process.log()
