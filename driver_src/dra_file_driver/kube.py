"""Kubernetes API access.

resource.k8s.io/v1 objects are handled as plain dicts through the generic
custom-objects client (it works for built-in groups too): the generated
models of the Python client lag behind the API and would silently drop fields
they do not know, such as a device's allowMultipleAllocations.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from kubernetes import client, config

RESOURCE_GROUP = "resource.k8s.io"
RESOURCE_VERSION = "v1"
RESOURCE_API_VERSION = f"{RESOURCE_GROUP}/{RESOURCE_VERSION}"

# Connection and read timeouts (seconds) for ordinary requests: a hung API
# server must turn into an error the caller can report, not a stuck thread.
REQUEST_TIMEOUT = (5.0, 20.0)
# Concurrent prepares each GET their claim; one connection per worker thread.
CONNECTION_POOL_SIZE = 32


class KubeconfigError(Exception):
    """No usable client configuration."""


def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """Client from a kubeconfig file, or from the in-cluster service account."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as exc:
        raise KubeconfigError(str(exc)) from exc
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    # No hidden urllib3 retries: the publisher retries with its own backoff
    # and the kubelet retries failed prepares, each with a clear log line.
    configuration.retries = 0
    return client.ApiClient(configuration)


def status_of(exc: BaseException) -> int | None:
    """HTTP status of a failed API call, None if it never got an answer."""
    if isinstance(exc, client.ApiException):
        return int(exc.status) if exc.status else None
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a failed API call, for logs and claim errors.

    For API errors this includes the server's message, which says e.g. which
    RBAC permission is missing.
    """
    if isinstance(exc, client.ApiException):
        summary = f"HTTP {exc.status} {exc.reason}"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(exc.body or "").get("message")
            if message:
                return f"{summary}: {message}"
        return summary
    return f"{type(exc).__name__}: {exc}"
