"""Kubernetes API access: the few REST calls the driver makes, as plain JSON.

The driver reads ResourceClaims and writes its ResourceSlices, as JSON over
HTTPS with urllib3; it does not use the kubernetes Python client. That client
costs about 20 MiB of memory and 0.3 s of start-up for the import alone (it
loads requests, oauthlib, pydantic and ~380 modules), its generated API
classes add more (CoreV1Api: another 20 MiB and a second), and its models lag
behind the API and drop fields they do not know, such as a device's
allowMultipleAllocations.

Credentials come from the pod's service account (the DaemonSet's case) or
from a kubeconfig with a bearer token or a client certificate (development
and tests); exec plugins and auth providers are refused with a clear error.

Loading them happens in Api.connect(), which the driver calls after its
sockets answer, so the kubelet's GetInfo never waits for it; requests made
before connect() has finished wait for it within their own timeout.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import ssl

    import urllib3

RESOURCE_GROUP = "resource.k8s.io"
RESOURCE_VERSION = "v1"
RESOURCE_API_VERSION = f"{RESOURCE_GROUP}/{RESOURCE_VERSION}"

# Connection and read timeouts (seconds) for ordinary requests: a hung API
# server must turn into an error the caller can report, not a stuck thread.
REQUEST_TIMEOUT = (5.0, 20.0)
# Concurrent prepares each GET their claim; one connection per worker thread.
CONNECTION_POOL_SIZE = 32
# Where a pod finds its service account.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The kubelet rotates projected service-account tokens; re-read the file
# this often (client-go does the same).
TOKEN_REREAD_SECONDS = 60.0
USER_AGENT = "dra-file-driver"

# One number bounds the whole request; a pair bounds connecting and each read.
Timeout = float | tuple[float, float]
Query = Sequence[tuple[str, str | int]]


class KubeconfigError(Exception):
    """No usable client configuration."""


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


def check_kubeconfig(kubeconfig: Path | None) -> None:
    """Fail at once on a configuration that cannot work, without loading it.

    Catches what is cheap to see (a missing file, not running in a pod);
    anything else surfaces in Api.connect().
    """
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise KubeconfigError(f"{kubeconfig} is not a readable file")
        return
    missing = [
        v for v in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT") if v not in os.environ
    ]
    if missing:
        raise KubeconfigError(
            f"no kubeconfig given and not running in a pod ({' and '.join(missing)} not set)"
        )
    if not (SERVICE_ACCOUNT_DIR / "token").is_file():
        raise KubeconfigError(
            f"no kubeconfig given and no service account token in {SERVICE_ACCOUNT_DIR}"
        )


# --- client configuration ------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    """Where the API server is and how to talk to it."""

    server: str  # scheme://host[:port][/prefix]
    ssl_context: ssl.SSLContext
    tls_server_name: str | None
    token: TokenSource | None


class TokenSource:
    """A bearer token, fixed or read from a file that may be rotated."""

    def __init__(self, value: str = "", path: Path | None = None) -> None:
        self._value = value
        self._path = path
        self._read_at = -TOKEN_REREAD_SECONDS
        self._lock = threading.Lock()

    def get(self) -> str:
        if self._path is None:
            return self._value
        with self._lock:
            if time.monotonic() - self._read_at >= TOKEN_REREAD_SECONDS:
                self._value = self._path.read_text().strip()
                self._read_at = time.monotonic()
            return self._value


def in_cluster_config() -> ClientConfig:
    """The pod's service account, as a DaemonSet pod has it."""
    import ssl  # noqa: PLC0415 - see the module docstring

    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeconfigError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
        token = TokenSource(path=SERVICE_ACCOUNT_DIR / "token")
        token.get()  # unreadable now: fail at start, not on every call
    except (OSError, ssl.SSLError) as exc:
        raise KubeconfigError(f"service account: {exc}") from exc
    return ClientConfig(f"https://{host}:{port}", context, None, token)


def kubeconfig_config(path: Path) -> ClientConfig:
    """The current context of a kubeconfig file (token or client certificate)."""
    import ssl  # noqa: PLC0415 - see the module docstring

    import yaml  # noqa: PLC0415

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"{path}: {exc}") from exc
    try:
        cluster, user = _current_context(doc)
        server = cluster["server"]
        if not isinstance(server, str) or not server.startswith(("https://", "http://")):
            raise KubeconfigError(f"cluster server {server!r} is not an http(s) URL")
        context = _ssl_context(cluster, user, path.parent)
    except KubeconfigError as exc:
        raise KubeconfigError(f"{path}: {exc}") from exc
    except (OSError, ssl.SSLError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KubeconfigError(f"{path}: {type(exc).__name__}: {exc}") from exc
    token = None
    if user.get("token"):
        token = TokenSource(value=str(user["token"]))
    elif user.get("tokenFile"):
        token = TokenSource(path=Path(_file(path.parent, user, "tokenFile")))
    return ClientConfig(server.rstrip("/"), context, cluster.get("tls-server-name"), token)


UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password")


def _current_context(doc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(doc, dict):
        raise KubeconfigError("not a kubeconfig (no mapping at the top)")

    def named(section: str, name: Any) -> dict[str, Any]:
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                value = entry.get(section.rstrip("s"))
                return value if isinstance(value, dict) else {}
        raise KubeconfigError(f"{section.rstrip('s')} {name!r} not found")

    context = named("contexts", doc.get("current-context"))
    cluster = named("clusters", context.get("cluster"))
    user = named("users", context.get("user")) if context.get("user") else {}
    unsupported = [f for f in UNSUPPORTED_USER_FIELDS if user.get(f)]
    if unsupported:
        raise KubeconfigError(
            f"user credentials by {', '.join(unsupported)} are not supported; "
            "use a token, a tokenFile or a client certificate"
        )
    return cluster, user


def _ssl_context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    import ssl  # noqa: PLC0415

    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context = ssl.create_default_context(cadata=pem)
    elif cluster.get("certificate-authority"):
        context = ssl.create_default_context(cafile=_file(base, cluster, "certificate-authority"))
    else:
        context = ssl.create_default_context()
    if user.get("client-certificate") or user.get("client-certificate-data"):
        with _pem(user, "client-certificate", base) as cert, _pem(user, "client-key", base) as key:
            context.load_cert_chain(cert, key)
    return context


def _file(base: Path, section: Mapping[str, Any], field: str) -> str:
    """The path in section[field], relative to the kubeconfig's directory; it must exist."""
    path = base / str(section[field])
    if not path.is_file():
        raise KubeconfigError(f"{field} {path} is not a readable file")
    return str(path)


@contextlib.contextmanager
def _pem(user: Mapping[str, Any], field: str, base: Path) -> Iterator[str]:
    """A path to the PEM in user[field] (a file) or user[field-data] (inline).

    Inline data goes to an anonymous in-memory file: the driver's root file
    system is read-only, and a key has no business on a disk anyway.
    """
    if user.get(f"{field}-data"):
        fd = os.memfd_create(field)
        try:
            os.write(fd, base64.b64decode(user[f"{field}-data"]))
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    elif user.get(field):
        yield _file(base, user, field)
    else:
        raise KubeconfigError(f"user has a client certificate or key but no {field}")


# --- requests --------------------------------------------------------------------


class Api:
    """JSON requests to the API server, once connect() has loaded the configuration."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self._kubeconfig = kubeconfig
        self._connected = threading.Event()
        self._config: ClientConfig | None = None
        self._pool: urllib3.PoolManager | None = None
        self._timeout_type: type[urllib3.Timeout] | None = None

    def connect(self) -> None:
        """Load the configuration and set up the connection pool; once only."""
        if self._connected.is_set():
            return
        import urllib3  # noqa: PLC0415 - see the module docstring

        if self._kubeconfig is not None:
            self._config = kubeconfig_config(self._kubeconfig)
        else:
            self._config = in_cluster_config()
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
