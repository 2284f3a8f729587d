"""Download official release binaries, checked against their published SHA-256 sums.

The faster path to the cluster's binaries where the release hosts answer (a
minute instead of a quarter of an hour of compiling). It is only ever a
shortcut: `binaries.py` builds the same versions from the Go module proxy, and
`auto` falls back to that whenever a download fails.

Each release is verified the way its project documents: Kubernetes publishes a
`<binary>.sha256` next to every binary on dl.k8s.io, containerd a
`<archive>.sha256sum` next to every archive, etcd one `SHA256SUMS` per release.
A file whose digest differs is discarded, never installed.

Archives are not unpacked wholesale: only the named members are read and
written under names we choose, so an archive cannot place files elsewhere.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import platform
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from localcluster.versions import KubernetesVersion

DEFAULT_KUBERNETES_RELEASES = "https://dl.k8s.io/release"
DEFAULT_ETCD_RELEASES = "https://github.com/etcd-io/etcd/releases/download"
DEFAULT_CONTAINERD_RELEASES = "https://github.com/containerd/containerd/releases/download"

# Seconds without progress before a download is given up (then `auto` builds).
DOWNLOAD_TIMEOUT = 30.0

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# Machine names (`uname -m`) and the architecture names Go, the release sites and
# image configs use for them.
GO_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class DownloadError(RuntimeError):
    """A release could not be downloaded or did not match its published checksum."""


@dataclass(frozen=True)
class ReleaseHosts:
    """Base URLs of the three release sites; a mirror keeps the same layout below them."""

    kubernetes: str = DEFAULT_KUBERNETES_RELEASES
    etcd: str = DEFAULT_ETCD_RELEASES
    containerd: str = DEFAULT_CONTAINERD_RELEASES

    @classmethod
    def from_environment(cls) -> ReleaseHosts:
        return cls(
            kubernetes=os.environ.get(
                "LOCALCLUSTER_KUBERNETES_RELEASES", DEFAULT_KUBERNETES_RELEASES
            ),
            etcd=os.environ.get("LOCALCLUSTER_ETCD_RELEASES", DEFAULT_ETCD_RELEASES),
            containerd=os.environ.get(
                "LOCALCLUSTER_CONTAINERD_RELEASES", DEFAULT_CONTAINERD_RELEASES
            ),
        )


@dataclass(frozen=True)
class Asset:
    """One published file and where its checksum is published."""

    url: str
    checksum_url: str
    # The name the checksum file lists it under (its last path element).
    file_name: str
    # For an archive, (member path, installed name) pairs; for a bare binary,
    # empty, and the binary is installed under `file_name`.
    members: tuple[tuple[str, str], ...] = ()


def go_arch(machine: str | None = None) -> str:
    """The architecture name the release sites use for this machine."""
    machine = (machine or platform.machine()).lower()
    if machine not in GO_ARCHITECTURES:
        raise DownloadError(f"no release binaries are published for the {machine} architecture")
    return GO_ARCHITECTURES[machine]


def kubernetes_assets(
    version: KubernetesVersion, commands: Sequence[str], hosts: ReleaseHosts, arch: str
) -> list[Asset]:
    base = f"{hosts.kubernetes.rstrip('/')}/{version.tag}/bin/linux/{arch}"
    return [
        Asset(url=f"{base}/{command}", checksum_url=f"{base}/{command}.sha256", file_name=command)
        for command in commands
    ]


def etcd_assets(version: str, hosts: ReleaseHosts, arch: str) -> list[Asset]:
    name = f"etcd-{version}-linux-{arch}"
    base = f"{hosts.etcd.rstrip('/')}/{version}"
    return [
        Asset(
            url=f"{base}/{name}.tar.gz",
            checksum_url=f"{base}/SHA256SUMS",
            file_name=f"{name}.tar.gz",
            members=((f"{name}/etcd", "etcd"),),
        )
    ]


def containerd_assets(version: str, hosts: ReleaseHosts, arch: str) -> list[Asset]:
    # The static build runs on any glibc, like the CGO-free binaries we build.
    archive = f"containerd-static-{version.removeprefix('v')}-linux-{arch}.tar.gz"
    base = f"{hosts.containerd.rstrip('/')}/{version}"
    commands = ("containerd", "containerd-shim-runc-v2", "ctr")
    return [
        Asset(
            url=f"{base}/{archive}",
            checksum_url=f"{base}/{archive}.sha256sum",
            file_name=archive,
            members=tuple((f"bin/{command}", command) for command in commands),
        )
    ]


def expected_digest(checksum_text: str, file_name: str, source: str) -> str:
    """The SHA-256 a checksum file gives for `file_name`.

    Accepts a file holding the bare digest (dl.k8s.io) and `sha256sum` output
    (`<digest>  <name>`, `*<name>` in binary mode), with one or many lines.
    """
    lines = [line.split() for line in checksum_text.splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) == 1 and _SHA256.match(lines[0][0].lower()):
        return lines[0][0].lower()
    for fields in lines:
        if len(fields) == 2 and fields[1].lstrip("*") == file_name:
            digest = fields[0].lower()
            if _SHA256.match(digest):
                return digest
            raise DownloadError(f"{source}: {digest!r} is not a SHA-256 digest")
    raise DownloadError(f"{source} lists no SHA-256 digest for {file_name}")


def _open(url: str) -> http.client.HTTPResponse:
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"{url}: only http and https release hosts are supported")
    try:
        # The scheme is checked just above.
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT)  # noqa: S310
        return cast(http.client.HTTPResponse, response)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: {reason}") from error


def _read_text(url: str) -> str:
    with _open(url) as response:
        try:
            data: bytes = response.read(1 << 20)
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(f"{url}: {error}") from error
    return data.decode("utf-8", errors="replace")


def _download_verified(url: str, destination: Path, digest: str) -> None:
    """Stream `url` into `destination`; remove it and fail unless its SHA-256 is `digest`."""
    sha256 = hashlib.sha256()
    try:
        with _open(url) as response, destination.open("wb") as output:
            while chunk := response.read(_CHUNK):
                sha256.update(chunk)
                output.write(chunk)
    except (OSError, http.client.HTTPException) as error:
        destination.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {error}") from error
    if sha256.hexdigest() != digest:
        destination.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: SHA-256 {sha256.hexdigest()} does not match the published {digest}; "
            "the file was discarded"
        )


def _install_members(archive: Path, members: Sequence[tuple[str, str]], directory: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member_path, installed_name in members:
                try:
                    member = tar.getmember(member_path)
                except KeyError:
                    raise DownloadError(f"{archive.name} has no {member_path}") from None
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DownloadError(f"{archive.name}: {member_path} is not a regular file")
                with source, (directory / installed_name).open("wb") as output:
                    while chunk := source.read(_CHUNK):
                        output.write(chunk)
                (directory / installed_name).chmod(0o755)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{archive.name} is not a readable gzip tar: {error}") from error


def download_assets(assets: Sequence[Asset], directory: Path, log: Callable[[str], None]) -> None:
    """Download, verify and install every asset's binaries into `directory`."""
    for asset in assets:
        checksums = _read_text(asset.checksum_url)
        digest = expected_digest(checksums, asset.file_name, asset.checksum_url)
        log(f"localcluster: downloading {asset.url}")
        if not asset.members:
            _download_verified(asset.url, directory / asset.file_name, digest)
            (directory / asset.file_name).chmod(0o755)
            continue
        archive = directory / f".{asset.file_name}"
        _download_verified(asset.url, archive, digest)
        try:
            _install_members(archive, asset.members, directory)
        finally:
            archive.unlink(missing_ok=True)
