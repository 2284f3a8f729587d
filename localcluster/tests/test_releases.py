"""Downloading release binaries: URLs, checksum files, verification, fallback to building.

The real release sites cannot be reached from the machines these tests run on,
so a loopback HTTP server plays a mirror with the sites' layout. It serves the
real binaries this project built, packed the way each project publishes them,
so what is downloaded is then run.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from localcluster.binaries import (
    KUBERNETES_COMMANDS,
    BuildError,
    default_cache_dir,
    ensure_binaries,
)
from localcluster.releases import (
    DownloadError,
    ReleaseHosts,
    containerd_assets,
    etcd_assets,
    expected_digest,
    go_arch,
    kubernetes_assets,
)
from localcluster.versions import (
    CONTAINERD_VERSION,
    DEFAULT_KUBERNETES_VERSION,
    ETCD_VERSION,
    KubernetesVersion,
)

VERSION = KubernetesVersion.parse(DEFAULT_KUBERNETES_VERSION)
DIGEST = "a" * 64


# --- where each project publishes its files (pinned: the sites' real layouts) --


def test_kubernetes_binaries_and_checksums_come_from_dl_k8s_io() -> None:
    assets = kubernetes_assets(VERSION, KUBERNETES_COMMANDS, ReleaseHosts(), "amd64")
    kubelet = next(asset for asset in assets if asset.file_name == "kubelet")
    assert kubelet.url == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet"
    assert kubelet.checksum_url == kubelet.url + ".sha256"
    assert kubelet.members == ()
    assert sorted(asset.file_name for asset in assets) == sorted(KUBERNETES_COMMANDS)


def test_etcd_comes_as_a_tarball_listed_in_the_release_sha256sums() -> None:
    (asset,) = etcd_assets("v3.6.16", ReleaseHosts(), "arm64")
    base = "https://github.com/etcd-io/etcd/releases/download/v3.6.16"
    assert asset.url == f"{base}/etcd-v3.6.16-linux-arm64.tar.gz"
    assert asset.checksum_url == f"{base}/SHA256SUMS"
    assert asset.members == (("etcd-v3.6.16-linux-arm64/etcd", "etcd"),)


def test_containerd_comes_as_its_static_tarball_with_a_sha256sum_file() -> None:
    (asset,) = containerd_assets("v2.4.2", ReleaseHosts(), "amd64")
    base = "https://github.com/containerd/containerd/releases/download/v2.4.2"
    assert asset.url == f"{base}/containerd-static-2.4.2-linux-amd64.tar.gz"
    assert asset.checksum_url == asset.url + ".sha256sum"
    assert dict(asset.members) == {
        "bin/containerd": "containerd",
        "bin/containerd-shim-runc-v2": "containerd-shim-runc-v2",
        "bin/ctr": "ctr",
    }


def test_a_mirror_keeps_the_layout_below_its_base_url() -> None:
    hosts = ReleaseHosts(kubernetes="http://mirror.invalid/k8s/")
    (asset,) = kubernetes_assets(VERSION, ["kubectl"], hosts, "amd64")
    assert asset.url == "http://mirror.invalid/k8s/v1.37.2/bin/linux/amd64/kubectl"


def test_release_hosts_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCLUSTER_ETCD_RELEASES", "http://mirror.invalid/etcd")
    hosts = ReleaseHosts.from_environment()
    assert hosts.etcd == "http://mirror.invalid/etcd"
    assert hosts.kubernetes == "https://dl.k8s.io/release"


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_machine_names_map_to_release_architectures(machine: str, arch: str) -> None:
    assert go_arch(machine) == arch


def test_an_architecture_without_releases_is_named() -> None:
    with pytest.raises(DownloadError, match="riscv64"):
        go_arch("riscv64")


# --- checksum files ------------------------------------------------------------


def test_a_bare_digest_file_gives_its_digest() -> None:
    assert expected_digest(DIGEST.upper() + "\n", "kubelet", "kubelet.sha256") == DIGEST


def test_sha256sum_output_gives_the_named_files_digest() -> None:
    other = "b" * 64
    text = f"{other}  etcd-v3.6.16-linux-amd64.zip\n{DIGEST} *etcd-v3.6.16-linux-amd64.tar.gz\n"
    assert expected_digest(text, "etcd-v3.6.16-linux-amd64.tar.gz", "SHA256SUMS") == DIGEST


def test_a_checksum_file_without_the_file_is_an_error() -> None:
    text = f"{DIGEST}  something-else.tar.gz\n"
    with pytest.raises(DownloadError, match=r"SHA256SUMS lists no SHA-256 digest for etcd\.tgz"):
        expected_digest(text, "etcd.tgz", "SHA256SUMS")


def test_a_malformed_digest_is_an_error() -> None:
    with pytest.raises(DownloadError, match="not a SHA-256 digest"):
        expected_digest("xyz  etcd.tar.gz\n", "etcd.tar.gz", "SHA256SUMS")


# --- a loopback mirror serving the binaries this project built -----------------


@dataclass
class Mirror:
    root: Path
    hosts: ReleaseHosts
    requests: list[str]

    def kubernetes_file(self, command: str) -> Path:
        return self.root / "k8s" / VERSION.tag / "bin" / "linux" / go_arch() / command

    def etcd_dir(self) -> Path:
        return self.root / "etcd" / ETCD_VERSION

    def containerd_archive(self) -> Path:
        name = f"containerd-static-{CONTAINERD_VERSION.removeprefix('v')}-linux-{go_arch()}.tar.gz"
        return self.root / "containerd" / CONTAINERD_VERSION / name


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    seen: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.seen.append(self.path)


@pytest.fixture(scope="module")
def built() -> Path:
    """The cache holding the binaries this project builds (scripts/test builds them first)."""
    ensure_binaries(VERSION, source="build")
    return default_cache_dir() / "bin"


def _quiet(message: str) -> None:
    del message


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _pack(archive: Path, members: dict[str, Path]) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)


def _publish_mirror(root: Path, built: Path) -> None:
    """Lay out `built`'s binaries the way the three release sites publish them."""
    arch = go_arch()
    for command in KUBERNETES_COMMANDS:
        published = root / "k8s" / VERSION.tag / "bin" / "linux" / arch / command
        published.parent.mkdir(parents=True, exist_ok=True)
        published.symlink_to(built / f"kubernetes-{VERSION.tag}" / command)
        published.with_name(f"{command}.sha256").write_text(_sha256(published))

    etcd_name = f"etcd-{ETCD_VERSION}-linux-{arch}"
    etcd_archive = root / "etcd" / ETCD_VERSION / f"{etcd_name}.tar.gz"
    _pack(etcd_archive, {f"{etcd_name}/etcd": built / f"etcd-{ETCD_VERSION}" / "etcd"})
    (etcd_archive.parent / "SHA256SUMS").write_text(
        f"{'0' * 64}  {etcd_name}.zip\n{_sha256(etcd_archive)}  {etcd_name}.tar.gz\n"
    )

    version = CONTAINERD_VERSION.removeprefix("v")
    containerd_archive = (
        root
        / "containerd"
        / CONTAINERD_VERSION
        / (f"containerd-static-{version}-linux-{arch}.tar.gz")
    )
    containerd_dir = built / f"containerd-{CONTAINERD_VERSION}"
    _pack(
        containerd_archive,
        {
            f"bin/{command}": containerd_dir / command
            for command in ("containerd", "containerd-shim-runc-v2", "ctr")
        },
    )
    containerd_archive.with_name(containerd_archive.name + ".sha256sum").write_text(
        f"{_sha256(containerd_archive)}  {containerd_archive.name}\n"
    )


@pytest.fixture
def mirror(tmp_path: Path, built: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror"
    _publish_mirror(root, built)
    seen: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Mirror(
            root=root,
            hosts=ReleaseHosts(
                kubernetes=f"{base}/k8s", etcd=f"{base}/etcd", containerd=f"{base}/containerd"
            ),
            requests=seen,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _run(binary: Path, *args: str) -> str:
    return subprocess.run(
        [str(binary), *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_download_installs_verified_binaries_that_run(tmp_path: Path, mirror: Mirror) -> None:
    cache = tmp_path / "cache"
    binaries = ensure_binaries(VERSION, cache, log=_quiet, source="download", hosts=mirror.hosts)

    for command in KUBERNETES_COMMANDS:
        assert _sha256(binaries.path(command)) == _sha256(mirror.kubernetes_file(command))
    assert VERSION.tag in _run(binaries.path("kubectl"), "version", "--client")
    assert ETCD_VERSION.removeprefix("v") in _run(binaries.path("etcd"), "--version")
    assert CONTAINERD_VERSION in _run(binaries.path("containerd"), "--version")
    assert binaries.path("containerd-shim-runc-v2").stat().st_mode & 0o111

    origin = (binaries.kubernetes / ".origin").read_text()
    assert origin.startswith("downloaded, SHA-256 verified: ")
    assert f"{mirror.hosts.kubernetes}/{VERSION.tag}/bin/linux/{go_arch()}/kubelet" in origin
    # Archives are unpacked member by member and not kept.
    assert sorted(path.name for path in binaries.etcd.iterdir()) == [".origin", "etcd"]


def test_a_cached_download_is_not_fetched_again(tmp_path: Path, mirror: Mirror) -> None:
    cache = tmp_path / "cache"
    ensure_binaries(VERSION, cache, log=_quiet, source="download", hosts=mirror.hosts)
    fetched = len(mirror.requests)
    ensure_binaries(VERSION, cache, log=_quiet, source="download", hosts=mirror.hosts)
    assert fetched > 0
    assert len(mirror.requests) == fetched


def test_a_binary_that_does_not_match_its_checksum_is_refused(
    tmp_path: Path, mirror: Mirror
) -> None:
    tampered = mirror.kubernetes_file("kubelet")
    tampered.unlink()
    tampered.write_bytes(b"#!/bin/sh\necho not the kubelet\n")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"/kubelet: SHA-256 \w+ does not match the published"):
        ensure_binaries(VERSION, cache, log=_quiet, source="download", hosts=mirror.hosts)
    # Nothing half-done stays in the cache: the next run starts over.
    assert sorted(path.name for path in (cache / "bin").iterdir()) == []


def test_an_archive_without_a_binary_is_refused(tmp_path: Path, mirror: Mirror) -> None:
    archive = mirror.containerd_archive()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("bin/containerd")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    checksum = archive.with_name(archive.name + ".sha256sum")
    checksum.write_text(f"{_sha256(archive)}  {archive.name}\n")
    with pytest.raises(DownloadError, match="has no bin/containerd-shim-runc-v2"):
        ensure_binaries(
            VERSION, tmp_path / "cache", log=_quiet, source="download", hosts=mirror.hosts
        )


def test_an_unreachable_release_site_fails_a_download_only_run(tmp_path: Path) -> None:
    # A port nothing listens on: connection refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    hosts = ReleaseHosts(kubernetes=closed, etcd=closed, containerd=closed)
    checksum_url = re.escape(f"{closed}/{VERSION.tag}/bin/linux/{go_arch()}/") + r"\S+\.sha256"
    with pytest.raises(DownloadError, match=checksum_url):
        ensure_binaries(VERSION, tmp_path / "cache", log=_quiet, source="download", hosts=hosts)


def test_auto_builds_what_it_cannot_download(tmp_path: Path, mirror: Mirror) -> None:
    # etcd is missing from the mirror (HTTP 404): auto builds it from the Go
    # module proxy, and still downloads the rest.
    for published in mirror.etcd_dir().iterdir():
        published.unlink()
    messages: list[str] = []
    binaries = ensure_binaries(
        VERSION, tmp_path / "cache", log=messages.append, source="auto", hosts=mirror.hosts
    )
    etcd_origin = (binaries.etcd / ".origin").read_text()
    assert etcd_origin.startswith("built from go.etcd.io/etcd/server/v3@")
    assert ETCD_VERSION.removeprefix("v") in _run(binaries.path("etcd"), "--version")
    assert (binaries.kubernetes / ".origin").read_text().startswith("downloaded")
    assert (binaries.containerd / ".origin").read_text().startswith("downloaded")
    assert any("no release download" in message and "HTTP 404" in message for message in messages)


def test_an_unknown_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="'mirror' is not one of auto, download, build"):
        ensure_binaries(VERSION, tmp_path, source="mirror")  # type: ignore[arg-type]
