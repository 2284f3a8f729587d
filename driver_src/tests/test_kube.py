"""The API access layer: error descriptions, paths, requests and watches over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dra_file_driver import kube

from .driver_testkit import wait_for, write_kubeconfig


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
