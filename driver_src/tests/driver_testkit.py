"""Helpers shared by the driver's tests (imported as a plain module by pytest)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dra_file_driver import cdi, checkpoint, config, device_files
from dra_file_driver.app import Driver
from dra_file_driver.claims import ClaimError, ClaimRef
from dra_file_driver.config import Config
from dra_file_driver.prepared import PreparedClaim

from .kubelet_client import Claim, KubeletClient

DRIVER = "file.dra.example.com"
NODE = "node-a"


def new_uid() -> str:
    return str(uuid.uuid4())


def claim_object(
    *,
    namespace: str,
    name: str,
    uid: str,
    results: Sequence[Mapping[str, Any]] = (),
    pods: Sequence[str] = (),
    reserved_for: Sequence[Mapping[str, Any]] | None = None,
    allocated: bool = True,
) -> dict[str, Any]:
    """A ResourceClaim as the API server returns it (only the fields the driver reads)."""
    obj: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"namespace": namespace, "name": name, "uid": uid},
        "spec": {"devices": {"requests": []}},
        "status": {},
    }
    if allocated:
        obj["status"]["allocation"] = {"devices": {"results": list(results)}}
    consumers = (
        list(reserved_for)
        if reserved_for is not None
        else [{"resource": "pods", "name": p, "uid": new_uid()} for p in pods]
    )
    if consumers:
        obj["status"]["reservedFor"] = consumers
    return obj


def result(
    device: str, request: str = "req", pool: str = NODE, driver: str = DRIVER
) -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": pool, "device": device}


class FakeClaimSource:
    """A fake of the API server's ResourceClaim GET, for tests without a cluster."""

    def __init__(self) -> None:
        self._claims: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.gets = 0

    def add(self, obj: dict[str, Any]) -> Claim:
        meta = obj["metadata"]
        with self._lock:
            self._claims[(meta["namespace"], meta["name"])] = obj
        return Claim(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])

    def delete(self, claim: Claim | ClaimRef) -> None:
        with self._lock:
            del self._claims[(claim.namespace, claim.name)]

    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        with self._lock:
            self.gets += 1
            obj = self._claims.get((ref.namespace, ref.name))
        if obj is None:
            raise ClaimError(f"claim {ref} does not exist")
        return obj


def directory_flags(base: Path) -> list[str]:
    """Flags that put every directory of the driver under base (short, for socket paths)."""
    return [
        "--registry-dir",
        str(base / "reg"),
        "--plugin-dir",
        str(base / "plugin"),
        "--cdi-dir",
        str(base / "cdi"),
        "--file-dir",
        str(base / "files"),
    ]


def make_config(base: Path, **overrides: Any) -> Config:
    """A configuration with every directory under base."""
    cfg = config.parse(["--node-name", NODE, *directory_flags(base)], {})
    return replace(cfg, **overrides)


@dataclass(frozen=True)
class NodeDirs:
    plugin_dir: Path
    cdi_dir: Path
    file_dir: Path
    driver_name: str = DRIVER


def file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def assert_consistent(dirs: NodeDirs, file_count: int) -> list[PreparedClaim]:
    """Assert that device files and CDI specs are exactly what the checkpoint implies.

    Returns the checkpointed claims. This is the invariant the driver
    promises after any restart, including one after kill -9.
    """
    ckpt_path = dirs.plugin_dir / checkpoint.FILE_NAME
    claims = checkpoint.decode(ckpt_path.read_bytes(), ckpt_path) if ckpt_path.exists() else []
    spec_dir = cdi.SpecDirectory(dirs.cdi_dir, dirs.driver_name)
    assert spec_dir.claim_uids() == {c.uid for c in claims}
    for claim in claims:
        spec = json.loads(spec_dir.path(claim.uid).read_text())
        assert sorted(d["name"] for d in spec["devices"]) == sorted(
            {cdi.device_name(claim.uid, d.device) for d in claim.devices}
        )
    expected: dict[str, list[str]] = {f"file{i}": [] for i in range(1, file_count + 1)}
    for claim in claims:
        for device in dict.fromkeys(d.device for d in claim.devices):
            expected.setdefault(device, []).extend(claim.pods)
    for device, pods in expected.items():
        path = dirs.file_dir / device
        assert path.read_bytes() == device_files.render(pods), f"{path} disagrees with checkpoint"
    for directory in (dirs.plugin_dir, dirs.cdi_dir, dirs.file_dir):
        leftovers = [p.name for p in directory.iterdir() if ".tmp-" in p.name]
        assert leftovers == [], f"temporary files left in {directory}"
    return claims


@dataclass
class RunningDriver:
    """An in-process driver and a kubelet-like client connected to it."""

    driver: Driver
    kubelet: KubeletClient
    cfg: Config

    @property
    def dirs(self) -> NodeDirs:
        cfg = self.cfg
        return NodeDirs(cfg.plugin_dir, cfg.cdi_dir, cfg.file_dir, cfg.driver_name)


StartDriver = Callable[..., RunningDriver]


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    """A kubeconfig with one cluster, one user and a context of both (JSON is valid YAML)."""
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


def unreachable_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig whose API server address refuses connections (JSON is valid YAML)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "gone",
                        "cluster": {
                            "server": f"https://127.0.0.1:{port}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    return path


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll condition until true; fail naming what did not happen (a bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
