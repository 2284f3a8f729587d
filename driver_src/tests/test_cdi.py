"""The CDI specs the driver writes: content, names and IDs, version, and the CDI schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dra_file_driver import cdi
from dra_file_driver.prepared import PreparedClaim, PreparedDevice

DRIVER = "file.dra.example.com"
UID = "3f2a7e5c-1b2d-4e6f-8a9b-0c1d2e3f4a5b"
SCHEMA = json.loads((Path(__file__).parent / "data" / "cdi-spec-1.1.0.schema.json").read_text())

# Name rules of the CDI parser (container-device-interface v1.1.0,
# pkg/parser/parser.go): vendor and class start with a letter, device names
# with a letter or digit; all end with a letter or digit.
_VENDOR_OR_CLASS = re.compile(r"[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?")


def claim(uid: str = UID, devices: tuple[str, ...] = ("file1",)) -> PreparedClaim:
    return PreparedClaim(
        uid=uid,
        namespace="ns",
        name="claim",
        pods=("pod-a",),
        devices=tuple(
            PreparedDevice(f"req-{i}", "node-a", d, f"/etc/dra/{d}") for i, d in enumerate(devices)
        ),
    )


def test_spec_binds_file_read_only_at_same_path_with_env() -> None:
    assert cdi.build_spec(DRIVER, claim()) == {
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


def test_a_device_held_for_several_requests_is_one_cdi_device() -> None:
    spec = cdi.build_spec(DRIVER, claim(devices=("file2", "file1", "file2")))
    assert [d["name"] for d in spec["devices"]] == [f"{UID}-file2", f"{UID}-file1"]


def test_ids_returned_to_the_kubelet_name_devices_of_the_spec() -> None:
    prepared = claim(devices=("file1", "file2"))
    spec = cdi.build_spec(DRIVER, prepared)
    ids = [cdi.qualified_device_id(DRIVER, prepared.uid, d.device) for d in prepared.devices]
    assert ids == [
        f"k8s.file.dra.example.com/file={UID}-file1",
        f"k8s.file.dra.example.com/file={UID}-file2",
    ]
    # A qualified ID is "<kind>=<device name>" (CDI parser.ParseQualifiedName).
    assert [i.partition("=") for i in ids] == [
        (spec["kind"], "=", d["name"]) for d in spec["devices"]
    ]
    # The spec format is pinned: JSON content in a .json file.
    assert cdi.spec_file_name(DRIVER, UID) == f"k8s.file.dra.example.com-file_{UID}.json"


@pytest.mark.parametrize(
    ("uid", "version"),
    [
        (UID, "0.5.0"),  # a device name starting with a digit needs 0.5.0
        ("a" + UID[1:], "0.3.0"),  # otherwise the oldest version loaders accept
    ],
)
def test_spec_claims_the_oldest_version_its_names_allow(uid: str, version: str) -> None:
    assert cdi.build_spec(DRIVER, claim(uid))["cdiVersion"] == version


@pytest.mark.parametrize("uid", [UID, "a" + UID[1:], "0", "Z-9"])
@pytest.mark.parametrize("devices", [("file1",), ("file1", "file2", "file1"), ("file10",)])
def test_written_specs_follow_the_cdi_schema_and_name_rules(
    tmp_path: Path, uid: str, devices: tuple[str, ...]
) -> None:
    specs = cdi.SpecDirectory(tmp_path, DRIVER)
    specs.write(claim(uid, devices))
    spec = json.loads(specs.path(uid).read_text())  # as a runtime reads it
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(spec, SCHEMA, cls=jsonschema.Draft7Validator)
    vendor, _, cdi_class = spec["kind"].partition("/")
    assert _VENDOR_OR_CLASS.fullmatch(vendor), vendor
    assert _VENDOR_OR_CLASS.fullmatch(cdi_class), cdi_class
    assert all(_DEVICE_NAME.fullmatch(d["name"]) for d in spec["devices"]), spec["devices"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.pop("kind"), "'kind' is a required property"),
        (lambda s: s["devices"][0].pop("containerEdits"), "'containerEdits' is a required"),
        (lambda s: s["devices"][0]["containerEdits"].update(env="A=1"), "is not of type 'array'"),
        (
            lambda s: s["devices"][0]["containerEdits"]["mounts"][0].update(options="ro"),
            "is not of type 'array'",
        ),
        (
            lambda s: s["devices"][0]["containerEdits"]["mounts"][0].pop("containerPath"),
            "'containerPath' is a required property",
        ),
    ],
)
def test_the_schema_file_catches_a_broken_spec(change: Any, problem: str) -> None:
    """The schema check above can fail: broken copies of a good spec are rejected."""
    spec = cdi.build_spec(DRIVER, claim())
    change(spec)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(problem)):
        jsonschema.validate(spec, SCHEMA, cls=jsonschema.Draft7Validator)


def test_spec_directory_lists_only_this_drivers_specs(tmp_path: Path) -> None:
    specs = cdi.SpecDirectory(tmp_path, DRIVER)
    assert specs.write(claim())
    assert not specs.write(claim())
    (tmp_path / "k8s.gpu.example.com-gpu_abc.json").write_text("{}")
    (tmp_path / f"k8s.file.dra.example.com-file_{UID}.yaml.bak").write_text("")
    assert specs.claim_uids() == {UID}
    assert json.loads(specs.path(UID).read_text())["kind"] == "k8s.file.dra.example.com/file"
    assert specs.remove(UID)
    assert specs.claim_uids() == set()
