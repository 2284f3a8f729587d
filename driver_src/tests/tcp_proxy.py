"""A TCP forwarder between the driver and the real API server, to cut the line.

Cutting it is an API server outage as the driver sees one (open connections
drop, new ones are refused) without stopping the API server that other tests
share; restoring it is the API server coming back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml


class TcpProxy:
    """Listens on the target's host (so its TLS name still fits), on another port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def restore(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._target[0], self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            _close(listener)
        for conn in connections:
            _close(conn)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def server_address(kubeconfig: Path) -> tuple[str, int]:
    """Host and port of the API server of the kubeconfig's first cluster."""
    url = urlsplit(_first_cluster(yaml.safe_load(kubeconfig.read_text()))["server"])
    return str(url.hostname), int(url.port or 443)


def kubeconfig_via(kubeconfig: Path, proxy: TcpProxy, path: Path) -> Path:
    """A copy of kubeconfig whose server is reached through proxy (same host name for TLS)."""
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = _first_cluster(doc)
    url = urlsplit(cluster["server"])
    cluster["server"] = urlunsplit(url._replace(netloc=f"{url.hostname}:{proxy.port}"))
    base = kubeconfig.parent
    for key in ("certificate-authority",):  # relative paths stay valid in the copy
        if key in cluster:
            cluster[key] = str(base / cluster[key])
    for entry in doc.get("users") or []:
        for key in ("client-certificate", "client-key", "tokenFile"):
            if key in entry["user"]:
                entry["user"][key] = str(base / entry["user"][key])
    path.write_text(yaml.safe_dump(doc))
    return path


def _first_cluster(doc: Any) -> dict[str, Any]:
    cluster: dict[str, Any] = doc["clusters"][0]["cluster"]
    return cluster
