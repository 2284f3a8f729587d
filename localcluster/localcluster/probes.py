"""Readiness checks over HTTP(S) on loopback and the node address."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False
    except urllib.error.URLError as error:
        # Connection refused while a component starts is expected: the caller polls.
        if isinstance(error.reason, OSError):
            raise error.reason from error
        return False


def client_tls(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS that verifies the API server against the run's CA and presents a client cert."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def self_signed_tls() -> ssl.SSLContext:
    """For the health endpoints of the controller manager and scheduler on loopback.

    They serve a certificate they generate at start, which nothing can verify;
    the connection never leaves 127.0.0.1 and carries no credential.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
