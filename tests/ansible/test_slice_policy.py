"""The dra_driver role's admission policy, against the real API server.

The role's RBAC (rbac.yaml.j2) and policy (slice_policy.yaml.j2) are rendered
through Ansible and applied to the local control plane. A service-account
token of the driver's ServiceAccount, bound to a pod on node A as the kubelet
requests it for the driver pod, carries node A in its user extra; with it,
writes to node A's slices of the driver pass and every other write to a
ResourceSlice is denied by the policy (RBAC alone would allow them all).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

GROUP, VERSION = "resource.k8s.io", "v1"
DRIVER = "file.dra.example.com"
SERVICE_ACCOUNT = "dra-file-driver"
POLICY = "dra-file-driver-node-scoped-slices"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def admin(control_plane: Any) -> client.ApiClient:
    api: client.ApiClient = control_plane.api_client()
    return api


@pytest.fixture(scope="module")
def driver_namespace(admin: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(admin)
    name = unique("dra-policy")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def role_manifests(
    run_playbook: Any,
    control_plane: Any,
    driver_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """The role's RBAC and admission policy, rendered by Ansible and applied."""
    render_dir = tmp_path_factory.mktemp("driver-manifests")
    variables = {
        "dra_driver_test_render_dir": str(render_dir),
        "dra_driver_namespace": driver_namespace,
    }
    rendered = run_playbook(
        "tests/ansible/render_driver_manifests.yml", "--extra-vars", json.dumps(variables)
    )
    assert rendered.returncode == 0, rendered.output
    files = [render_dir / "rbac.yaml", render_dir / "slice_policy.yaml"]
    for path in files:
        control_plane.kubectl("apply", "-f", str(path))
    yield
    for path in reversed(files):
        control_plane.kubectl("delete", "--ignore-not-found", "-f", str(path))


@pytest.fixture(scope="module")
def nodes(admin: client.ApiClient) -> Iterator[tuple[str, str]]:
    """Two Node objects without kubelets: A, where the driver pod runs, and B."""
    core = client.CoreV1Api(admin)
    names = (unique("node-a"), unique("node-b"))
    for name in names:
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        core.delete_node(name)


def api_with_token(admin: client.ApiClient, token: str) -> client.ApiClient:
    """A client of the same API server that authenticates with token only."""
    configuration = copy.copy(admin.configuration)
    configuration.cert_file = None
    configuration.key_file = None
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def request_token(admin: client.ApiClient, namespace: str, bound_pod: client.V1Pod | None) -> str:
    """A token of the driver's ServiceAccount, bound to bound_pod as the kubelet binds it."""
    bound = None
    if bound_pod is not None:
        assert bound_pod.metadata is not None
        bound = client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=bound_pod.metadata.name, uid=bound_pod.metadata.uid
        )
    answer = client.CoreV1Api(admin).create_namespaced_service_account_token(
        SERVICE_ACCOUNT,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[], bound_object_ref=bound, expiration_seconds=600
            )
        ),
    )
    assert answer.status is not None
    return str(answer.status.token)


@pytest.fixture(scope="module")
def driver_on_node_a(
    admin: client.ApiClient,
    driver_namespace: str,
    nodes: tuple[str, str],
    role_manifests: None,
) -> client.ApiClient:
    """Client with the credentials of a driver pod on node A."""
    pod = client.CoreV1Api(admin).create_namespaced_pod(
        driver_namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="driver"),
            spec=client.V1PodSpec(
                node_name=nodes[0],
                service_account_name=SERVICE_ACCOUNT,
                containers=[client.V1Container(name="c", image="registry.invalid/never:pulled")],
            ),
        ),
    )
    return api_with_token(admin, request_token(admin, driver_namespace, pod))


def slice_body(node: str | None, driver: str = DRIVER, devices: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "driver": driver,
        "pool": {"name": node or "cluster", "generation": 1, "resourceSliceCount": 1},
        "devices": [{"name": f"file{i}"} for i in range(1, devices + 1)],
    }
    if node is None:
        spec["allNodes"] = True
    else:
        spec["nodeName"] = node
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceSlice",
        "metadata": {"name": unique("slice")},
        "spec": spec,
    }


class Slices:
    """ResourceSlice writes with one identity."""

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._objects.create_cluster_custom_object(GROUP, VERSION, "resourceslices", body),
        )

    def replace(self, current: dict[str, Any], **spec: Any) -> dict[str, Any]:
        body = copy.deepcopy(current)
        body["spec"].update(spec)
        return cast(
            dict[str, Any],
            self._objects.replace_cluster_custom_object(
                GROUP, VERSION, "resourceslices", current["metadata"]["name"], body
            ),
        )

    def delete(self, current: dict[str, Any]) -> None:
        self._objects.delete_cluster_custom_object(
            GROUP, VERSION, "resourceslices", current["metadata"]["name"]
        )

    def exists(self, current: dict[str, Any]) -> bool:
        try:
            self._objects.get_cluster_custom_object(
                GROUP, VERSION, "resourceslices", current["metadata"]["name"]
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def denial(write: Callable[[], object]) -> str:
    """Run a write that the policy must deny; return the API server's message."""
    with pytest.raises(client.ApiException) as info:
        write()
    assert info.value.status == 403, info.value.body
    message = str(json.loads(str(info.value.body))["message"])
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in message, message
    return message


@pytest.fixture(scope="module")
def enforced(
    admin: client.ApiClient, driver_on_node_a: client.ApiClient, nodes: tuple[str, str]
) -> None:
    """Wait until the API server enforces the new policy (its informers load it)."""
    as_admin, as_driver = Slices(admin), Slices(driver_on_node_a)

    def denies() -> bool:
        body = slice_body(nodes[1])
        try:
            as_driver.create(body)
        except client.ApiException as exc:
            return exc.status == 403 and POLICY in str(exc.body)
        as_admin.delete(body)  # written before the policy was active
        return False

    poll(denies, 60, "the admission policy to be enforced")

    def type_checked() -> Any:
        policy = client.AdmissionregistrationV1Api(admin).read_validating_admission_policy(POLICY)
        return (
            policy.status is not None and policy.status.observed_generation is not None and policy
        )

    policy = poll(type_checked, 60, "the policy's type check")
    warnings = (
        policy.status.type_checking.expression_warnings if policy.status.type_checking else []
    )
    assert not warnings, warnings


def test_a_token_bound_to_a_pod_names_the_pods_node(
    driver_on_node_a: client.ApiClient, driver_namespace: str, nodes: tuple[str, str]
) -> None:
    """What the policy relies on: the API server puts the pod's node into the token."""
    review = client.AuthenticationV1Api(driver_on_node_a).create_self_subject_review(
        client.V1SelfSubjectReview()
    )
    assert review.status is not None
    user = review.status.user_info
    assert user is not None
    assert user.username == f"system:serviceaccount:{driver_namespace}:{SERVICE_ACCOUNT}"
    assert (user.extra or {}).get(NODE_NAME_EXTRA) == [nodes[0]]


def test_the_driver_writes_its_own_nodes_slices(
    driver_on_node_a: client.ApiClient, nodes: tuple[str, str], enforced: None
) -> None:
    slices = Slices(driver_on_node_a)
    own = slices.create(slice_body(nodes[0]))
    own = slices.replace(own, devices=[{"name": "file1"}, {"name": "file2"}])
    assert [d["name"] for d in own["spec"]["devices"]] == ["file1", "file2"]
    slices.delete(own)
    assert not slices.exists(own)


def test_the_driver_cannot_write_another_nodes_slices(
    admin: client.ApiClient,
    driver_on_node_a: client.ApiClient,
    nodes: tuple[str, str],
    enforced: None,
) -> None:
    node_a, node_b = nodes
    as_admin, as_driver = Slices(admin), Slices(driver_on_node_a)

    message = denial(lambda: as_driver.create(slice_body(node_b)))
    assert f"the driver on node {node_a} may only write ResourceSlices of that node" in message
    assert f"not those of node {node_b}" in message

    # Node B's own slice, written by someone allowed to: the driver on A can
    # neither change nor delete it. (Moving a slice to another node is no
    # way around this: the API server keeps spec.nodeName immutable.)
    theirs = as_admin.create(slice_body(node_b))
    try:
        denial(lambda: as_driver.replace(theirs, devices=[]))
        denial(lambda: as_driver.delete(theirs))
        assert as_admin.exists(theirs)
    finally:
        as_admin.delete(theirs)


def test_the_driver_cannot_write_cluster_wide_or_other_drivers_slices(
    driver_on_node_a: client.ApiClient, nodes: tuple[str, str], enforced: None
) -> None:
    as_driver = Slices(driver_on_node_a)
    message = denial(lambda: as_driver.create(slice_body(None)))
    assert "not slices without spec.nodeName" in message
    message = denial(lambda: as_driver.create(slice_body(nodes[0], driver="gpu.example.com")))
    assert f"only write ResourceSlices of driver {DRIVER}, not those of gpu.example.com" in message


def test_a_token_not_bound_to_a_pod_writes_no_slice(
    admin: client.ApiClient, driver_namespace: str, nodes: tuple[str, str], enforced: None
) -> None:
    unbound = api_with_token(admin, request_token(admin, driver_namespace, None))
    message = denial(lambda: Slices(unbound).create(slice_body(nodes[0])))
    assert "credentials name no node" in message
