from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver import cdi

UID = "3f2a7e5c-1b2d-4e6f-8a9b-0c1d2e3f4a5b"


def test_spec_binds_file_read_only_at_same_path_with_env() -> None:
    spec = cdi.build_spec(
        "file.dra.example.com",
        UID,
        [cdi.FileMount("file1", "/etc/dra/file1", "DRA_FILE1")],
    )
    assert spec == {
        "cdiVersion": "0.5.0",
        "kind": "k8s.file.dra.example.com/file",
        "devices": [
            {
                "name": f"{UID}-file1",
                "containerEdits": {
                    "env": ["DRA_FILE1=/etc/dra/file1"],
                    "mounts": [
                        {
                            "hostPath": "/etc/dra/file1",
                            "containerPath": "/etc/dra/file1",
                            "options": ["ro", "nosuid", "nodev", "bind"],
                        }
                    ],
                },
            }
        ],
    }


def test_qualified_id_and_file_name() -> None:
    assert (
        cdi.qualified_device_id("file.dra.example.com", UID, "file2")
        == f"k8s.file.dra.example.com/file={UID}-file2"
    )
    # The spec format is pinned: JSON content in a .json file.
    assert cdi.spec_file_name("file.dra.example.com", UID) == (
        f"k8s.file.dra.example.com-file_{UID}.json"
    )


def _spec(**device_edits: Any) -> dict[str, Any]:
    return {"kind": "v.example.com/c", "devices": [{"name": "d", "containerEdits": device_edits}]}


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        (_spec(env=["A=1"]), "0.3.0"),
        (_spec(mounts=[{"hostPath": "/a", "containerPath": "/a", "type": "bind"}]), "0.4.0"),
        (_spec(mounts=[{"hostPath": "/a", "containerPath": "/a"}]), "0.3.0"),
        ({"kind": "v.example.com/c", "devices": [{"name": "0d", "containerEdits": {}}]}, "0.5.0"),
        (_spec(deviceNodes=[{"path": "/dev/x", "hostPath": "/dev/y"}]), "0.5.0"),
        ({**_spec(), "annotations": {"a": "b"}}, "0.6.0"),
        ({**_spec(), "kind": "v.example.com/c.d"}, "0.6.0"),
        (_spec(additionalGids=[44]), "0.7.0"),
        (_spec(intelRdt={"closID": "x"}), "0.7.0"),
        (_spec(intelRdt={"enableMonitoring": True}), "1.1.0"),
        ({**_spec(), "containerEdits": {"netDevices": [{"hostInterfaceName": "e"}]}}, "1.1.0"),
    ],
)
def test_minimum_version(spec: dict[str, Any], version: str) -> None:
    assert cdi.minimum_version(spec) == version


def test_uid_with_leading_letter_needs_only_0_3_0() -> None:
    spec = cdi.build_spec("d.example.com", "a" + UID[1:], [cdi.FileMount("file1", "/f", "E")])
    assert spec["cdiVersion"] == "0.3.0"


def test_spec_directory_lists_only_this_drivers_specs(tmp_path: Path) -> None:
    specs = cdi.SpecDirectory(tmp_path, "file.dra.example.com")
    assert specs.write(UID, [cdi.FileMount("file1", "/etc/dra/file1", "DRA_FILE1")])
    assert not specs.write(UID, [cdi.FileMount("file1", "/etc/dra/file1", "DRA_FILE1")])
    (tmp_path / "k8s.gpu.example.com-gpu_abc.json").write_text("{}")
    (tmp_path / f"k8s.file.dra.example.com-file_{UID}.yaml.bak").write_text("")
    assert specs.claim_uids() == {UID}
    assert json.loads(specs.path(UID).read_text())["kind"] == "k8s.file.dra.example.com/file"
    assert specs.remove(UID)
    assert specs.claim_uids() == set()
