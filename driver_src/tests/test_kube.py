"""The API access layer: error descriptions, paths, and reading client configurations."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dra_file_driver import kube

from .driver_testkit import wait_for


def test_api_errors_carry_the_servers_message() -> None:
    body = json.dumps({"message": 'resourceclaims "c" is forbidden: User "x" cannot get'})
    denied = kube.ApiError(403, "Forbidden", body)
    assert kube.describe_error(denied) == (
        'HTTP 403 Forbidden: resourceclaims "c" is forbidden: User "x" cannot get'
    )
    assert kube.status_of(denied) == 403
    assert kube.describe_error(kube.ApiError(500, "Error")) == "HTTP 500 Error"
    assert (
        kube.describe_error(kube.ApiError(502, "Bad Gateway", "<html>")) == "HTTP 502 Bad Gateway"
    )


def test_transport_errors_name_their_type() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert kube.describe_error(refused) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert kube.status_of(refused) is None


def test_object_paths_quote_names() -> None:
    assert kube.object_path("v1", "nodes", "node-a") == "/api/v1/nodes/node-a"
    assert (
        kube.object_path("resource.k8s.io/v1", "resourceclaims", "c", namespace="ns")
        == "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c"
    )
    assert kube.object_path("resource.k8s.io/v1", "resourceslices") == (
        "/apis/resource.k8s.io/v1/resourceslices"
    )
    assert kube.object_path("v1", "nodes", "../secrets?x") == "/api/v1/nodes/..%2Fsecrets%3Fx"


# --- client configuration ------------------------------------------------------


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


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
    cfg = kube.kubeconfig_config(path)
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
    cfg = kube.kubeconfig_config(path)
    assert cfg.token is not None
    assert cfg.token.get() == "first"
    (tmp_path / "token").write_text("second\n")
    assert cfg.token.get() == "first"  # not re-read on every request
    monkeypatch.setattr(kube, "TOKEN_REREAD_SECONDS", 0.0)
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
    cfg = kube.kubeconfig_config(path)
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
    with pytest.raises(kube.KubeconfigError, match="kubeconfig"):
        kube.kubeconfig_config(path)


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
    with pytest.raises(kube.KubeconfigError, match=message):
        kube.kubeconfig_config(path)


def test_a_missing_context_or_no_kubeconfig_at_all(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({"current-context": "gone", "contexts": []}))
    with pytest.raises(kube.KubeconfigError, match="context 'gone' not found"):
        kube.kubeconfig_config(path)
    path.write_text("- just a list")
    with pytest.raises(kube.KubeconfigError, match="not a kubeconfig"):
        kube.kubeconfig_config(path)
    with pytest.raises(kube.KubeconfigError, match="not a readable file"):
        kube.check_kubeconfig(tmp_path / "nothing")


# --- requests, over real HTTP to a local server ----------------------------------


class ApiStandIn(BaseHTTPRequestHandler):
    """Answers a few fixed paths the way the API server would (plain HTTP)."""

    protocol_version = "HTTP/1.1"
    seen_headers: ClassVar[list[dict[str, str]]] = []
    release_watch = threading.Event()

    def do_GET(self) -> None:
        ApiStandIn.seen_headers.append(dict(self.headers))
        if self.path == "/api/v1/nodes/n":
            self._json(200, {"metadata": {"name": "n"}})
        elif self.path == "/api/v1/nodes/gone":
            self._json(404, {"kind": "Status", "message": 'nodes "gone" not found'})
        elif self.path == "/api/v1/nodes/list":
            self._json(200, [1, 2])
        elif self.path.startswith("/api/v1/nodes?"):
            self._watch()
        else:
            self._json(500, {"message": f"unexpected {self.path}"})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _watch(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [
            {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
            {"type": "DELETED", "object": {"metadata": {"name": "a"}}},
        ]
        for event in events:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        ApiStandIn.release_watch.wait(30)  # an open watch: no more events for now

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[kube.Api]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiStandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ApiStandIn.seen_headers.clear()
    ApiStandIn.release_watch.clear()
    path = write_kubeconfig(
        tmp_path / "kubeconfig",
        {"server": f"http://127.0.0.1:{server.server_address[1]}"},
        {"token": "t0ken"},
    )
    api = kube.Api(path)
    yield api
    ApiStandIn.release_watch.set()
    api.close()
    server.shutdown()
    server.server_close()


def test_a_request_waits_for_connect_within_its_timeout(local_api: kube.Api) -> None:
    with pytest.raises(kube.NotConnectedError):
        local_api.request("GET", "/api/v1/nodes/n", timeout=0.05)
    threading.Timer(0.1, local_api.connect).start()
    assert local_api.request("GET", "/api/v1/nodes/n", timeout=30) == {"metadata": {"name": "n"}}
    assert ApiStandIn.seen_headers[-1]["Authorization"] == "Bearer t0ken"


def test_error_statuses_and_non_objects_are_api_errors(local_api: kube.Api) -> None:
    local_api.connect()
    with pytest.raises(kube.ApiError) as missing:
        local_api.request("GET", "/api/v1/nodes/gone", timeout=kube.REQUEST_TIMEOUT)
    assert kube.describe_error(missing.value) == 'HTTP 404 Not Found: nodes "gone" not found'
    with pytest.raises(kube.ApiError, match="not a JSON object"):
        local_api.request("GET", "/api/v1/nodes/list", timeout=kube.REQUEST_TIMEOUT)


def test_a_watch_yields_events_and_close_ends_a_blocked_read(local_api: kube.Api) -> None:
    local_api.connect()
    watch = local_api.watch("/api/v1/nodes", query=[("resourceVersion", "1")], timeout=(5, 60))
    seen: list[str] = []
    ended = threading.Event()

    def follow() -> None:
        for event in watch:
            seen.append(event["type"])
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_for(lambda: len(seen) == 2, 10, "two events")
    assert not ended.is_set()  # the server keeps the watch open
    watch.close()
    assert ended.wait(10)
    assert seen == ["ADDED", "DELETED"]
