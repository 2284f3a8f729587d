"""Pure ResourceSlice building (the API server's acceptance is tested in the cluster tests)."""

from __future__ import annotations

from pathlib import Path

from dra_file_driver import __version__, publisher
from dra_file_driver.devices import inventory


def test_single_slice_for_small_inventory() -> None:
    specs = publisher.build_slice_specs(
        "file.dra.example.com", "node-a", inventory(Path("/etc/dra"), 2), False, generation=3
    )
    assert specs == [
        {
            "driver": "file.dra.example.com",
            "nodeName": "node-a",
            "pool": {"name": "node-a", "generation": 3, "resourceSliceCount": 1},
            "devices": [
                {
                    "name": f"file{i}",
                    "attributes": {
                        "path": {"string": f"/etc/dra/file{i}"},
                        "index": {"int": i},
                        "shared": {"bool": False},
                        "driverVersion": {"version": __version__},
                    },
                }
                for i in (1, 2)
            ],
        }
    ]


def test_shared_devices_allow_multiple_allocations() -> None:
    (spec,) = publisher.build_slice_specs("d.example.com", "n", inventory(Path("/f"), 1), True, 0)
    device = spec["devices"][0]
    assert device["allowMultipleAllocations"] is True
    assert device["attributes"]["shared"] == {"bool": True}


def test_large_inventory_is_split_consistently() -> None:
    specs = publisher.build_slice_specs("d.example.com", "n", inventory(Path("/f"), 300), False, 7)
    assert [len(s["devices"]) for s in specs] == [128, 128, 44]
    assert all(s["pool"] == {"name": "n", "generation": 7, "resourceSliceCount": 3} for s in specs)
    names = [d["name"] for s in specs for d in s["devices"]]
    assert names == [f"file{i}" for i in range(1, 301)]


def test_new_slice_is_owned_by_the_node() -> None:
    obj = publisher.new_slice("d.example.com", "n", "uid-1", {"driver": "d.example.com"})
    assert obj["apiVersion"] == "resource.k8s.io/v1"
    assert obj["kind"] == "ResourceSlice"
    assert obj["metadata"]["generateName"] == "n-d.example.com-"
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "uid-1", "controller": True}
    ]
