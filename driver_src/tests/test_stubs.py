"""The committed stubs must be exactly what the generator makes from proto/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from dra_file_driver.kubeletapi import (
    dra_v1_pb2,
    dra_v1beta1_pb2,
    pluginregistration_v1_pb2,
)

DRIVER_SRC = Path(__file__).resolve().parent.parent
COMMITTED = DRIVER_SRC / "dra_file_driver" / "kubeletapi"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_stubs", DRIVER_SRC / "tools" / "generate_stubs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    generator = load_generator()
    fresh = {p.name: p.read_bytes() for p in generator.generate(tmp_path)}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*_pb2*")}
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert stale == [], (
        f"stubs differ from proto/: {stale}; regenerate with: {generator.REGENERATE_COMMAND}"
    )


@pytest.mark.parametrize(
    ("module", "package"),
    [
        (dra_v1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1"),
        (dra_v1beta1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1beta1"),
    ],
)
def test_dra_wire_names_and_field_numbers(module: ModuleType, package: str) -> None:
    descriptor = module.DESCRIPTOR
    assert descriptor.package == package
    assert descriptor.services_by_name["DRAPlugin"].full_name == f"{package}.DRAPlugin"
    assert sorted(m.name for m in descriptor.services_by_name["DRAPlugin"].methods) == [
        "NodePrepareResources",
        "NodeUnprepareResources",
    ]
    fields = {
        message: {f.name: f.number for f in descriptor.message_types_by_name[message].fields}
        for message in descriptor.message_types_by_name
    }
    device = {"request_names": 1, "pool_name": 2, "device_name": 3, "cdi_device_ids": 4}
    if package.endswith(".v1"):
        device["share_id"] = 5
    assert fields == {
        "NodePrepareResourcesRequest": {"claims": 1},
        "NodePrepareResourcesResponse": {"claims": 1},
        "NodePrepareResourceResponse": {"devices": 1, "error": 2},
        "Device": device,
        "NodeUnprepareResourcesRequest": {"claims": 1},
        "NodeUnprepareResourcesResponse": {"claims": 1},
        "NodeUnprepareResourceResponse": {"error": 1},
        "Claim": {"namespace": 1, "uid": 2, "name": 3},
    }


def test_registration_wire_names_and_field_numbers() -> None:
    descriptor = pluginregistration_v1_pb2.DESCRIPTOR
    assert descriptor.package == "pluginregistration"
    service = descriptor.services_by_name["Registration"]
    assert service.full_name == "pluginregistration.Registration"
    assert sorted(m.name for m in service.methods) == ["GetInfo", "NotifyRegistrationStatus"]
    fields = {
        message: {f.name: f.number for f in descriptor.message_types_by_name[message].fields}
        for message in descriptor.message_types_by_name
    }
    assert fields == {
        "InfoRequest": {},
        "PluginInfo": {"type": 1, "name": 2, "endpoint": 3, "supported_versions": 4},
        "RegistrationStatus": {"plugin_registered": 1, "error": 2},
        "RegistrationStatusResponse": {},
    }


def test_generated_code_matches_installed_grpc() -> None:
    # The stubs refuse to import on an older grpcio; pyproject's lower bound
    # must therefore be at least the generator's version.
    text = (COMMITTED / "dra_v1_pb2_grpc.py").read_text()
    generated = text.split("GRPC_GENERATED_VERSION = '", 1)[1].split("'", 1)[0]
    pyproject = (DRIVER_SRC / "pyproject.toml").read_text()
    assert f'"grpcio>={generated},' in pyproject
    assert f'"grpcio-tools=={generated}"' in pyproject
    assert tuple(map(int, grpc.__version__.split(".")[:3])) >= tuple(map(int, generated.split(".")))
