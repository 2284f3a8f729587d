"""Client configuration for the API server: where it is and which credentials to use.

From the pod's service account (the DaemonSet's case) or from a kubeconfig
with a bearer token or a client certificate (development and tests). Exec
plugins and auth providers are refused with a clear error: the driver runs
in a pod, and what it needs for development is a token or a certificate.
Modules that only this loading needs (ssl, yaml) are imported when it runs,
after the driver's sockets answer (see kube).
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

# Where a pod finds its service account.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The kubelet rotates projected service-account tokens; re-read the file
# this often (client-go does the same).
TOKEN_REREAD_SECONDS = 60.0
UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password")


class KubeconfigError(Exception):
    """No usable client configuration."""


def check(kubeconfig: Path | None) -> None:
    """Fail at once on a configuration that cannot work, without loading it.

    Catches what is cheap to see (a missing file, not running in a pod);
    anything else surfaces when the configuration is loaded.
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


def in_cluster() -> ClientConfig:
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


def load(path: Path) -> ClientConfig:
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
