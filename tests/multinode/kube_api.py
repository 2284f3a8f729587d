"""The few API calls the multi-node tests make, answering plain JSON dicts.

The kubernetes client's models are converted back to the API's own JSON
(camelCase, as kubectl shows it), so every reader in demo_state.py works on
one shape, the one the Kubernetes documentation describes.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .settings import Settings

JsonObject = dict[str, Any]

RESOURCE_GROUP, RESOURCE_VERSION = "resource.k8s.io", "v1"
# Seconds of any single request: a hung API server fails the test, it does not stall it.
REQUEST_TIMEOUT = 30


class KubeApi:
    def __init__(self, settings: Settings) -> None:
        self.api_client: client.ApiClient = config.new_client_from_config(
            str(settings.kubeconfig), context=settings.context or None
        )
        self._core = client.CoreV1Api(self.api_client)
        self._apps = client.AppsV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    def _json(self, model: object) -> JsonObject:
        return cast(JsonObject, self.api_client.sanitize_for_serialization(model))

    # ---- reads -------------------------------------------------------------
    def nodes(self) -> list[JsonObject]:
        listing = self._core.list_node(_request_timeout=REQUEST_TIMEOUT)
        return list(self._json(listing)["items"])

    def pods(self, namespace: str, label_selector: str) -> list[JsonObject]:
        listing = self._core.list_namespaced_pod(
            namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
        )
        return list(self._json(listing)["items"])

    def pod_log(self, namespace: str, pod: str) -> str:
        """The pod's log, each line prefixed with the runtime's RFC 3339 timestamp."""
        return str(
            self._core.read_namespaced_pod_log(
                pod, namespace, timestamps=True, _request_timeout=REQUEST_TIMEOUT
            )
        )

    def deployment(self, namespace: str, name: str) -> JsonObject:
        try:
            found = self._apps.read_namespaced_deployment(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                raise AssertionError(
                    f"Deployment {name} not found in namespace {namespace}: "
                    "is the demo converged on this cluster (--multinode-deployment)?"
                ) from None
            raise
        return self._json(found)

    def slices(self, field_selector: str = "") -> JsonObject:
        """The ResourceSlice list (items and metadata.resourceVersion)."""
        return cast(
            JsonObject,
            self.custom.list_cluster_custom_object(
                RESOURCE_GROUP,
                RESOURCE_VERSION,
                "resourceslices",
                field_selector=field_selector or None,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def claims(self, namespace: str) -> list[JsonObject]:
        listing = self.custom.list_namespaced_custom_object(
            RESOURCE_GROUP,
            RESOURCE_VERSION,
            namespace,
            "resourceclaims",
            _request_timeout=REQUEST_TIMEOUT,
        )
        return list(cast(JsonObject, listing)["items"])

    # ---- changes -----------------------------------------------------------
    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self._apps.patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}, _request_timeout=REQUEST_TIMEOUT
        )

    def delete_pod(self, namespace: str, name: str) -> None:
        self._core.delete_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT)
