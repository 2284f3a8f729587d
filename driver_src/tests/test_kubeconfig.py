"""Reading the client configuration: kubeconfig files (token, client certificate) and errors."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver import kubeconfig

from .driver_testkit import write_kubeconfig


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    return key_pair_in(tmp_path)


def key_pair_in(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key (it serves as CA and as client certificate)."""
    cert, key = directory / "client.crt", directory / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_token_and_insecure_server(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "kubeconfig",
        {"server": "https://127.0.0.1:6443/", "insecure-skip-tls-verify": True},
        {"token": "secret"},
    )
    cfg = kubeconfig.load(path)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.ssl_context.verify_mode == ssl.CERT_NONE
    assert cfg.token is not None
    assert cfg.token.get() == "secret"


def test_token_file_is_read_again_after_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("first\n")
    path = write_kubeconfig(
        tmp_path / "kubeconfig",
        {"server": "https://api.example:6443", "insecure-skip-tls-verify": True},
        {"tokenFile": "token"},  # relative to the kubeconfig
    )
    cfg = kubeconfig.load(path)
    assert cfg.token is not None
    assert cfg.token.get() == "first"
    (tmp_path / "token").write_text("second\n")
    assert cfg.token.get() == "first"  # not re-read on every request
    monkeypatch.setattr(kubeconfig, "TOKEN_REREAD_SECONDS", 0.0)
    assert cfg.token.get() == "second"


@pytest.mark.parametrize("inline", [True, False], ids=["data", "files"])
def test_client_certificate_inline_or_by_path(
    tmp_path: Path, key_pair: tuple[Path, Path], inline: bool
) -> None:
    cert, key = key_pair
    if inline:
        cluster = {"certificate-authority-data": base64.b64encode(cert.read_bytes()).decode()}
        user = {
            "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(key.read_bytes()).decode(),
        }
    else:
        cluster = {"certificate-authority": cert.name}
        user = {"client-certificate": cert.name, "client-key": key.name}
    path = write_kubeconfig(tmp_path / "kubeconfig", {"server": "https://h:1", **cluster}, user)
    cfg = kubeconfig.load(path)
    assert cfg.token is None
    assert cfg.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in cfg.ssl_context.get_ca_certs()] == [((("commonName", "test"),),)]


def test_a_key_that_does_not_match_is_a_kubeconfig_error(
    tmp_path: Path, key_pair: tuple[Path, Path]
) -> None:
    cert, _ = key_pair
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = key_pair_in(other)
    user = {"client-certificate": str(cert), "client-key": str(other_key)}
    path = write_kubeconfig(tmp_path / "kubeconfig", {"server": "https://h:1"}, user)
    with pytest.raises(kubeconfig.KubeconfigError, match="kubeconfig"):
        kubeconfig.load(path)


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({"server": "https://h:1"}, {"exec": {"command": "aws"}}, "exec are not supported"),
        ({"server": "https://h:1"}, {"auth-provider": {"name": "oidc"}}, "auth-provider"),
        ({"server": "h:1"}, {}, "is not an http"),
        (
            {"server": "https://h:1", "certificate-authority": "missing.crt"},
            {},
            "missing.crt is not a readable file",
        ),
        ({"server": "https://h:1"}, {"client-certificate-data": "QUFB"}, "no client-key"),
    ],
)
def test_unusable_kubeconfigs_are_named_errors(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", cluster, user)
    with pytest.raises(kubeconfig.KubeconfigError, match=message):
        kubeconfig.load(path)


def test_a_missing_context_or_no_kubeconfig_at_all(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({"current-context": "gone", "contexts": []}))
    with pytest.raises(kubeconfig.KubeconfigError, match="context 'gone' not found"):
        kubeconfig.load(path)
    path.write_text("- just a list")
    with pytest.raises(kubeconfig.KubeconfigError, match="not a kubeconfig"):
        kubeconfig.load(path)
    with pytest.raises(kubeconfig.KubeconfigError, match="not a readable file"):
        kubeconfig.check(tmp_path / "nothing")
