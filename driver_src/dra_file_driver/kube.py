"""Kubernetes API access: the few REST calls the driver makes, as plain JSON.

The driver reads ResourceClaims and writes its ResourceSlices, as JSON over
HTTPS with urllib3; it does not use the kubernetes Python client. That client
costs about 20 MiB of memory and 0.3 s of start-up for the import alone (it
loads requests, oauthlib, pydantic and ~380 modules), its generated API
classes add more (CoreV1Api: another 20 MiB and a second), and its models lag
behind the API and drop fields they do not know, such as a device's
allowMultipleAllocations.

Credentials are loaded (kubeconfig) in Api.connect(), which the driver calls
after its sockets answer, together with urllib3: the kubelet's GetInfo never
waits for them. Requests made before connect() has finished wait for it
within their own timeout.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from . import kubeconfig

if TYPE_CHECKING:
    import urllib3

RESOURCE_GROUP = "resource.k8s.io"
RESOURCE_VERSION = "v1"
RESOURCE_API_VERSION = f"{RESOURCE_GROUP}/{RESOURCE_VERSION}"

# Connection and read timeouts (seconds) for ordinary requests: a hung API
# server must turn into an error the caller can report, not a stuck thread.
REQUEST_TIMEOUT = (5.0, 20.0)
# Concurrent prepares each GET their claim; one connection per worker thread.
CONNECTION_POOL_SIZE = 32
USER_AGENT = "dra-file-driver"

# One number bounds the whole request; a pair bounds connecting and each read.
Timeout = float | tuple[float, float]
Query = Sequence[tuple[str, str | int]]


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class NotConnectedError(Exception):
    """The client configuration was not loaded (yet) when a request had to go out."""


def object_path(api_version: str, plural: str, name: str = "", namespace: str = "") -> str:
    """The REST path of a collection or of one object, names quoted."""
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path


# --- client configuration ------------------------------------------------------


class Api:
    """JSON requests to the API server, once connect() has loaded the configuration."""

    def __init__(self, kubeconfig_file: Path | None) -> None:
        """kubeconfig_file None: the pod's service account."""
        self._kubeconfig_file = kubeconfig_file
        self._connected = threading.Event()
        self._config: kubeconfig.ClientConfig | None = None
        self._pool: urllib3.PoolManager | None = None
        self._timeout_type: type[urllib3.Timeout] | None = None

    def connect(self) -> None:
        """Load the configuration and set up the connection pool; once only."""
        if self._connected.is_set():
            return
        import urllib3  # noqa: PLC0415 - see the module docstring

        if self._kubeconfig_file is not None:
            self._config = kubeconfig.load(self._kubeconfig_file)
        else:
            self._config = kubeconfig.in_cluster()
        self._pool = urllib3.PoolManager(
            maxsize=CONNECTION_POOL_SIZE,
            # One TLS context for all connections: urllib3 would otherwise
            # load the CA bundle again for each one.
            ssl_context=self._config.ssl_context,
            server_hostname=self._config.tls_server_name,
            # No hidden retries: the publisher retries with its own backoff
            # and the kubelet retries failed prepares, each with a log line.
            retries=False,
        )
        self._timeout_type = urllib3.Timeout
        self._connected.set()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: Timeout,
        query: Query = (),
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the decoded JSON object or raise ApiError."""
        response = self._send(method, path, query, body, timeout, stream=False)
        _raise_for_status(response)
        try:
            answer = json.loads(response.data)
        except ValueError as exc:
            raise ApiError(response.status, f"answer is not JSON: {response.data[:200]!r}") from exc
        if not isinstance(answer, dict):
            raise ApiError(response.status, f"answer is not a JSON object: {response.data[:200]!r}")
        return answer

    def watch(self, path: str, *, query: Query, timeout: Timeout) -> Watch:
        """Open a watch of a collection; iterate the Watch for its events."""
        response = self._send("GET", path, [*query, ("watch", "true")], None, timeout, stream=True)
        if not 200 <= response.status <= 299:
            response.read()
            response.release_conn()
            _raise_for_status(response)
        return Watch(response)

    def _send(
        self,
        method: str,
        path: str,
        query: Query,
        body: Mapping[str, Any] | None,
        timeout: Timeout,
        *,
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        if not self._connected.is_set():
            waited_from = time.monotonic()
            if not self._connected.wait(timeout[0] if isinstance(timeout, tuple) else timeout):
                raise NotConnectedError("the API client configuration is still loading")
            if not isinstance(timeout, tuple):  # the whole request stays within its bound
                timeout = max(0.001, timeout - (time.monotonic() - waited_from))
        config, pool, timeout_type = self._config, self._pool, self._timeout_type
        if config is None or pool is None or timeout_type is None:  # connect() failed
            raise NotConnectedError("the API client configuration could not be loaded")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if config.token is not None:
            headers["Authorization"] = f"Bearer {config.token.get()}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        url = f"{config.server}{path}"
        if query:
            url += f"?{urlencode(query)}"
        return pool.request(
            method,
            url,
            body=data,
            headers=headers,
            timeout=(
                timeout_type(connect=timeout[0], read=timeout[1])
                if isinstance(timeout, tuple)
                else timeout_type(total=timeout)
            ),
            preload_content=not stream,
        )


class Watch:
    """The events of one watch request, as decoded JSON objects; close() ends it."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._lines():
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ApiError(0, f"watch event is not a JSON object: {line[:200]!r}")
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(
                        int(status.get("code") or 0),
                        str(status.get("reason") or "watch error"),
                        json.dumps(status),
                    )
                yield event
        finally:
            self.close()

    def _lines(self) -> Iterator[bytes]:
        try:
            for line in self._response:  # urllib3 yields the body line by line
                if line.strip():
                    yield line
        except Exception:
            if self._closed:  # the read failed because close() cut it: just end
                return
            raise

    def close(self) -> None:
        """End the watch, also from another thread (a blocked read returns)."""
        self._closed = True
        # shutdown() unblocks a read in progress; the connection is not reused.
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(Exception):
            self._response.close()


def _raise_for_status(response: urllib3.BaseHTTPResponse) -> None:
    if not 200 <= response.status <= 299:
        raise ApiError(
            response.status, response.reason or "", response.data.decode("utf-8", "replace")
        )


def status_of(exc: BaseException) -> int | None:
    """HTTP status of a failed API call, None if it never got an answer."""
    if isinstance(exc, ApiError):
        return exc.status or None
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a failed API call, for logs and claim errors.

    For API errors this includes the server's message, which says e.g. which
    RBAC permission is missing.
    """
    if isinstance(exc, ApiError):
        summary = f"HTTP {exc.status} {exc.reason}"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(exc.body or "").get("message")
            if message:
                return f"{summary}: {message}"
        return summary
    return f"{type(exc).__name__}: {exc}"
