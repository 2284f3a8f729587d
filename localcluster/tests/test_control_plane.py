"""The API server of the local cluster serves DRA and validates it for real."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster.pytest_plugin import ClusterHandle

pytestmark = pytest.mark.cluster


def _device_class(name: str, expression: str) -> dict[str, object]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def test_resource_v1_is_served_with_every_dra_kind(control_plane: ClusterHandle) -> None:
    api = client.ApisApi(control_plane.api_client())
    groups = {group.name: group for group in api.get_api_versions().groups}
    versions = [v.version for v in groups["resource.k8s.io"].versions]
    assert "v1" in versions
    raw = control_plane.kubectl("get", "--raw", "/apis/resource.k8s.io/v1").stdout
    for kind in ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices"):
        assert f'"name":"{kind}"' in raw


def test_device_class_with_a_cel_selector_is_accepted(control_plane: ClusterHandle) -> None:
    name = f"valid-{uuid.uuid4().hex[:8]}"
    control_plane.create(_device_class(name, "device.driver == 'file.dra.example.com'"))
    try:
        stored = control_plane.get("deviceclass", name)
        assert stored["spec"]["selectors"] == [
            {"cel": {"expression": "device.driver == 'file.dra.example.com'"}}
        ]
    finally:
        control_plane.kubectl("delete", "deviceclass", name)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("device.driver ==", "compilation failed"),
        ("device.driver == 1", "no matching overload"),
    ],
)
def test_device_class_with_a_broken_cel_selector_is_rejected(
    control_plane: ClusterHandle, expression: str, complaint: str
) -> None:
    api = client.CustomObjectsApi(control_plane.api_client())
    with pytest.raises(ApiException) as rejected:
        api.create_cluster_custom_object(
            "resource.k8s.io",
            "v1",
            "deviceclasses",
            _device_class(f"invalid-{uuid.uuid4().hex[:8]}", expression),
        )
    assert rejected.value.status == 422
    assert complaint in str(rejected.value.body)


def test_api_server_runs_the_release_the_cluster_was_asked_for(
    control_plane: ClusterHandle,
) -> None:
    # The binary cache is keyed by version; this proves the key and the
    # binaries that run agree (LOCALCLUSTER_KUBERNETES_VERSION=v1.34.x too).
    served = client.VersionApi(control_plane.api_client()).get_code()
    assert served.git_version == control_plane.cluster.version.tag
    assert served.minor == str(control_plane.cluster.version.minor)
