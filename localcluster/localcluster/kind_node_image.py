"""A kind node image built on this machine, without a registry.

kind's own node image (`kindest/node`) cannot be pulled here, so this builds an
equivalent from what the project already has: a debootstrapped Debian bookworm
root file system (systemd, iptables, runc, Debian's CNI plugins), the cluster
binaries from the binary cache (kubelet, kubeadm, kubectl, containerd 2,
crictl), the files under `kind_node/rootfs/` (entrypoint, systemd units,
containerd configuration, the pod network), and one image archive for each
image kubeadm runs (API server, controller manager, scheduler, kube-proxy,
etcd, pause), each built from the same binaries under the name and tag kubeadm
asks for. The result is imported into podman, tagged with the Kubernetes
version and a digest of everything that went into it, so an unchanged build
is found instead of repeated.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from localcluster.binaries import (
    Binaries,
    cached_directory,
    crictl_build,
    default_cache_dir,
    ensure_binaries,
    ensure_built,
    kubeadm_build,
)
from localcluster.images import LayerEntry, write_image_archive
from localcluster.versions import PAUSE_IMAGE, KubernetesVersion

NODE_IMAGE_REPOSITORY = "localhost/dra-kind-node"
ROOTFS_OVERLAY = Path(__file__).parent / "kind_node" / "rootfs"

# What kind's base image installs, less what only other platforms need
# (fuse-overlayfs, NFS, iSCSI), plus runc and the CNI plugins from Debian.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "bash",
    "ca-certificates",
    "conntrack",
    "iptables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "procps",
    "socat",
    "libseccomp2",
    "runc",
    "containernetworking-plugins",
)
DEBIAN_SUITE = "bookworm"

# Adjustments kind makes to systemd in its base image: no units a container
# cannot run (udev, binfmt, kernel log), temporary files cleaned at boot only.
_SYSTEMD_ADJUSTMENTS = """\
set -e
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/*
rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/basic.target.wants/*
rm -f /lib/systemd/system/sockets.target.wants/*udev* /lib/systemd/system/sockets.target.wants/*initctl*
echo ReadKMsg=no >>/etc/systemd/journald.conf
systemctl mask systemd-binfmt.service
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
"""  # noqa: E501 (a shell script, kept as kind writes it)

# Units the node starts at boot (systemctl enable, done as symlinks in the layer).
_ENABLED_UNITS = (
    "containerd.service",
    "kubelet.service",
    "preload-images.service",
    "pod-network.service",
)

# The kube-proxy image runs iptables: these packages' files come along from the
# node's root file system (Debian's iptables and the libraries it links).
_KUBE_PROXY_PACKAGES = (
    "iptables",
    "libxtables12",
    "libip4tc2",
    "libip6tc2",
    "libnftnl11",
    "libmnl0",
    "libnetfilter-conntrack3",
    "libnfnetlink0",
    "libc6",
    "conntrack",
)
# update-alternatives links: not in any package's file list.
_KUBE_PROXY_LINKS_PREFIXES = ("etc/alternatives/ip", "usr/sbin/iptables", "usr/sbin/ip6tables")
# bookworm is merged-/usr: package lists name /lib/… where the files live in /usr/lib/….
_MERGED_USR = ("bin", "sbin", "lib", "lib64")


class NodeImageError(RuntimeError):
    """The node image could not be built; the message names the step."""


@dataclass(frozen=True)
class NodeImage:
    reference: str
    built: bool  # False when an image with the same content digest was already there
    seconds: float


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise NodeImageError(f"{what} failed ({' '.join(argv[:3])} …):\n{tail}")
    return str(result.stdout)


def base_rootfs(cache: Path, log: Callable[[str], None] = _stderr) -> Path:
    """The Debian base of the node as a tar archive, debootstrapped once per package list."""
    key = hashlib.sha256(
        "\n".join((DEBIAN_SUITE, *BASE_PACKAGES, _SYSTEMD_ADJUSTMENTS)).encode()
    ).hexdigest()[:12]

    def fill(staging: Path) -> str:
        root = staging / "root"
        started = time.monotonic()
        log(f"kind node image: debootstrapping Debian {DEBIAN_SUITE} (cached afterwards)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(root),
            ],
            "debootstrap",
        )
        _run(["chroot", str(root), "/bin/sh", "-c", _SYSTEMD_ADJUSTMENTS], "systemd adjustments")
        _run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(staging / "rootfs.tar"), "."],
            "tar of the base",
        )
        _run(["rm", "-rf", "--one-file-system", str(root)], "removing the debootstrap tree")
        log(f"kind node image: base ready in {time.monotonic() - started:.0f}s")
        return f"debootstrap --variant=minbase {DEBIAN_SUITE}: {' '.join(BASE_PACKAGES)}"

    return cached_directory(cache / f"kind-node-base-{key}", fill, log) / "rootfs.tar"


def kubeadm_image_references(kubeadm: Path, version: KubernetesVersion) -> dict[str, str]:
    """Image name (kube-apiserver, etcd, pause, …) to the full reference kubeadm uses."""
    listing = _run(
        [str(kubeadm), "config", "images", "list", f"--kubernetes-version={version.tag}"],
        "kubeadm config images list",
    )
    references: dict[str, str] = {}
    for reference in listing.split():
        name = reference.rsplit("/", 1)[-1].split(":", 1)[0]
        references[name] = reference
    return references


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileDigests:
    """SHA-256 digests of the node image's input files, remembered in a JSON
    file of the cache by (size, mtime, inode): `prepare` names the image from
    them on every playbook run, and hashing the base and the 14 binaries again
    took 1.2 s of each run. A file written anew (new mtime or inode) is read
    again. Losing the file only costs one hashing."""

    def __init__(self, store: Path) -> None:
        self.store = store
        try:
            loaded = json.loads(store.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._known: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self._dirty = False

    def digest(self, path: Path) -> str:
        info = path.stat()
        key = [info.st_size, info.st_mtime_ns, info.st_ino]
        entry = self._known.get(str(path))
        if (
            isinstance(entry, dict)
            and entry.get("key") == key
            and isinstance(entry.get("sha256"), str)
        ):
            return str(entry["sha256"])
        digest = _file_digest(path)
        self._known[str(path)] = {"key": key, "sha256": digest}
        self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        self.store.parent.mkdir(parents=True, exist_ok=True)
        partial = self.store.with_name(f".{self.store.name}.{os.getpid()}")
        partial.write_text(json.dumps(self._known, sort_keys=True))
        partial.replace(self.store)
        self._dirty = False


@dataclass(frozen=True)
class _NodeInputs:
    """Everything the node image is made of; its digest names the image."""

    version: KubernetesVersion
    base: Path
    node_binaries: dict[str, Path]  # path inside the node -> file
    images: dict[str, Path]  # reference -> the binary the image runs

    @property
    def pause_reference(self) -> str:
        return next(ref for ref in self.images if ref.rsplit("/", 1)[-1].startswith("pause:"))

    def digest(self, files: FileDigests) -> str:
        digest = hashlib.sha256(self.version.tag.encode())
        digest.update(files.digest(self.base).encode())
        for path in sorted(ROOTFS_OVERLAY.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(ROOTFS_OVERLAY).as_posix().encode())
                digest.update(path.read_bytes())
        for inside, source in sorted(self.node_binaries.items()):
            digest.update(f"{inside}={files.digest(source)}".encode())
        for reference, source in sorted(self.images.items()):
            digest.update(f"{reference}={files.digest(source)}".encode())
        digest.update(Path(__file__).read_bytes())  # how the parts are put together
        return digest.hexdigest()[:12]


def _node_binaries(binaries: Binaries, kubeadm: Path, crictl: Path) -> dict[str, Path]:
    return {
        "usr/bin/kubelet": binaries.path("kubelet"),
        "usr/bin/kubectl": binaries.path("kubectl"),
        "usr/bin/kubeadm": kubeadm,
        "usr/local/bin/crictl": crictl,
        "usr/local/bin/containerd": binaries.path("containerd"),
        "usr/local/bin/containerd-shim-runc-v2": binaries.path("containerd-shim-runc-v2"),
        "usr/local/bin/ctr": binaries.path("ctr"),
    }


def _image_binaries(binaries: Binaries, references: dict[str, str]) -> dict[str, Path]:
    wanted = (
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "pause",
    )
    missing = [name for name in wanted if name not in references]
    if missing:
        raise NodeImageError(f"kubeadm lists no image for {', '.join(missing)}")
    return {references[name]: binaries.path(name) for name in wanted}


def _package_files(base: tarfile.TarFile, packages: tuple[str, ...]) -> set[str]:
    """Paths (as stored in the base tar, without "./") of the files `packages` installed."""
    names = set(base.getnames())
    listed: set[str] = set()
    for package in packages:
        for list_name in (
            f"./var/lib/dpkg/info/{package}.list",
            f"./var/lib/dpkg/info/{package}:amd64.list",
        ):
            if list_name in names:
                member = base.extractfile(list_name)
                if member is not None:
                    listed.update(member.read().decode().split())
    files: set[str] = set()
    for listed_path in listed:
        parts = listed_path.strip("/").split("/", 1)
        in_usr = ["usr", *parts] if parts[0] in _MERGED_USR else parts
        files.add("/".join(in_usr))
    return files


def _kube_proxy_entries(base_tar: Path, kube_proxy: Path) -> list[LayerEntry]:
    with tarfile.open(base_tar) as base:
        wanted = _package_files(base, _KUBE_PROXY_PACKAGES)
        entries = [LayerEntry("usr/local/bin/kube-proxy", content=kube_proxy.read_bytes())]
        for member in base.getmembers():
            name = member.name.removeprefix("./")
            if name in _MERGED_USR and member.issym():
                entries.append(LayerEntry(name, link_target=member.linkname))
            elif name in wanted or name.startswith(_KUBE_PROXY_LINKS_PREFIXES):
                if member.issym():
                    entries.append(LayerEntry(name, link_target=member.linkname))
                elif member.isfile() or member.islnk():
                    data = base.extractfile(member)
                    if data is not None:
                        entries.append(LayerEntry(name, content=data.read(), mode=member.mode))
    # iptables takes a lock here; kube-proxy's DaemonSet mounts the node's.
    entries.append(LayerEntry("run/.keep", content=b"", mode=0o644))
    return entries


def _write_images(inputs: _NodeInputs, directory: Path) -> list[Path]:
    archives: list[Path] = []
    for reference, binary in sorted(inputs.images.items()):
        name = reference.rsplit("/", 1)[-1].split(":", 1)[0]
        destination = directory / f"{name}.tar"
        if name == "pause":
            entries = [LayerEntry("pause", content=binary.read_bytes())]
            write_image_archive(destination, reference, entries, entrypoint=["/pause"])
        elif name == "kube-proxy":
            write_image_archive(destination, reference, _kube_proxy_entries(inputs.base, binary))
        else:
            # kubeadm's static pod manifests start the component by its name.
            entries = [LayerEntry(f"usr/local/bin/{name}", content=binary.read_bytes())]
            write_image_archive(destination, reference, entries)
        archives.append(destination)
    return archives


def _overlay_members(
    inputs: _NodeInputs, image_archives: list[Path]
) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    def entry(
        name: str,
        *,
        data: bytes | None = None,
        mode: int = 0o644,
        link: str | None = None,
        directory: bool = False,
    ) -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(f"./{name}")
        info.mode = mode
        if directory:
            info.type = tarfile.DIRTYPE
        elif link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
        else:
            info.size = len(data or b"")
        return info, data

    for path in sorted(ROOTFS_OVERLAY.rglob("*")):
        name = path.relative_to(ROOTFS_OVERLAY).as_posix()
        if path.is_dir():
            yield entry(name, directory=True, mode=0o755)
        else:
            content = path.read_bytes().replace(b"@PAUSE_IMAGE@", inputs.pause_reference.encode())
            yield entry(name, data=content, mode=path.stat().st_mode & 0o777)
    for unit in _ENABLED_UNITS:
        yield entry(
            f"etc/systemd/system/multi-user.target.wants/{unit}", link=f"/etc/systemd/system/{unit}"
        )
    for inside, source in sorted(inputs.node_binaries.items()):
        yield entry(inside, data=source.read_bytes(), mode=0o755)
    yield entry("kind/version", data=f"{inputs.version.tag}\n".encode())
    yield entry("kind/images", directory=True, mode=0o755)
    for archive in image_archives:
        yield entry(f"kind/images/{archive.name}", data=archive.read_bytes())
    yield entry("etc/kubernetes/manifests", directory=True, mode=0o755)
    yield entry("etc/cni/net.d", directory=True, mode=0o755)


def _node_tar_stream(inputs: _NodeInputs, image_archives: list[Path], out: IO[bytes]) -> None:
    """The node's root file system as one tar: the base, then the overlay over it.

    Each path appears once (podman refuses a layer with duplicates): the
    overlay's files replace the base's, the base's directories are kept.
    """
    overlay = list(_overlay_members(inputs, image_archives))
    replaced = {info.name for info, _ in overlay if not info.isdir()}
    with (
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as node,
        tarfile.open(inputs.base) as base,
    ):
        written: set[str] = set()
        for member in base:
            if member.name in replaced:
                continue
            node.addfile(member, base.extractfile(member) if member.isfile() else None)
            written.add(member.name)
        for info, data in overlay:
            if info.isdir() and info.name in written:
                continue
            node.addfile(info, io.BytesIO(data) if data is not None else None)


def podman_image_exists(reference: str) -> bool:
    return subprocess.run(["podman", "image", "exists", reference], check=False).returncode == 0


def build_node_image(
    version: KubernetesVersion,
    cache: Path | None = None,
    log: Callable[[str], None] = _stderr,
) -> NodeImage:
    """Build (or find) the node image for `version`; returns its podman reference."""
    started = time.monotonic()
    cache = cache or default_cache_dir()
    binaries = ensure_binaries(version, cache, log, source="auto")
    kubeadm = ensure_built(kubeadm_build(version), cache, log) / "kubeadm"
    crictl = ensure_built(crictl_build(), cache, log) / "crictl"
    references = kubeadm_image_references(kubeadm, version)
    inputs = _NodeInputs(
        version=version,
        base=base_rootfs(cache, log),
        node_binaries=_node_binaries(binaries, kubeadm, crictl),
        images=_image_binaries(binaries, references),
    )
    file_digests = FileDigests(cache / "kind-node-file-digests.json")
    reference = f"{NODE_IMAGE_REPOSITORY}:{version.tag}-{inputs.digest(file_digests)}"
    file_digests.save()
    if podman_image_exists(reference):
        return NodeImage(reference, built=False, seconds=time.monotonic() - started)

    log(f"kind node image: building {reference}")
    work = cache / "kind-node-work"
    work.mkdir(parents=True, exist_ok=True)
    archives = _write_images(inputs, work)
    if inputs.pause_reference != PAUSE_IMAGE:
        log(
            f"kind node image: kubeadm's pause image is {inputs.pause_reference}, "
            f"the local cluster's {PAUSE_IMAGE}"
        )
    # podman's messages go to a file: a pipe nobody reads while the tar is
    # written could fill up and stall both sides.
    with (
        tempfile.TemporaryFile() as messages,
        subprocess.Popen(
            [
                "podman",
                "import",
                "--change",
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "--change",
                "STOPSIGNAL SIGRTMIN+3",
                "--change",
                "ENV container=podman",
                "--change",
                f"LABEL io.x-k8s.kind.version={version.tag}",
                "-",
                reference,
            ],
            stdin=subprocess.PIPE,
            stdout=messages,
            stderr=messages,
        ) as importer,
    ):
        if importer.stdin is None:  # for the type checker: stdin=PIPE above
            raise NodeImageError("podman import: no input pipe")
        try:
            _node_tar_stream(inputs, archives, importer.stdin)
        finally:
            importer.stdin.close()
            returncode = importer.wait()
        messages.seek(0)
        output = messages.read().decode(errors="replace").strip()
    for archive in archives:
        archive.unlink()
    if returncode != 0:
        raise NodeImageError(f"podman import of {reference} failed: {output}")
    return NodeImage(reference, built=True, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.kind_node_image", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubernetes-version", default="v1.37.2")
    args = parser.parse_args(argv)
    image = build_node_image(KubernetesVersion.parse(args.kubernetes_version))
    verb = "built" if image.built else "already present"
    print(f"kind node image: {verb} {image.reference} ({image.seconds:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
