"""Container images without a registry.

The node needs a pause image for every pod sandbox and a small userland for
test and demo pods. Neither can be pulled here, so both are assembled from
local files into `docker save` archives (one layer each, written
deterministically so the same inputs always give the same image ID) and
imported into the node's containerd, under the names the manifests use.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from localcluster.releases import GO_ARCHITECTURES
from localcluster.versions import BUSYBOX_IMAGE, PAUSE_IMAGE

BUSYBOX_BINARY = Path("/bin/busybox")  # Debian's busybox-static: no shared libraries
_EXECUTABLE_MODE = 0o755
# The containerd namespace the kubelet's CRI uses: images elsewhere are invisible to pods.
_CRI_NAMESPACE = "k8s.io"


class ImageError(RuntimeError):
    """An image archive that cannot be used, or a containerd that refuses it."""


@dataclass(frozen=True)
class LayerEntry:
    """A file or symlink to put in a one-layer image."""

    path: str  # inside the image, without a leading slash
    content: bytes | None = None  # regular file content
    link_target: str | None = None  # symlink target
    mode: int = _EXECUTABLE_MODE


def _layer_tar(entries: Iterable[LayerEntry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        directories: set[str] = set()
        for entry in sorted(entries, key=lambda item: item.path):
            parts = entry.path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, _EXECUTABLE_MODE
                    layer.addfile(info)
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.mode
            if entry.link_target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link_target
                layer.addfile(info)
            else:
                data = entry.content or b""
                info.size = len(data)
                layer.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_image_archive(
    destination: Path,
    reference: str,
    entries: Iterable[LayerEntry],
    *,
    entrypoint: list[str] | None = None,
    command: list[str] | None = None,
) -> Path:
    """Write a one-layer image as a `docker save` archive that containerd imports."""
    layer = _layer_tar(entries)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": GO_ARCHITECTURES.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": entrypoint,
            "Cmd": command,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "localcluster (built from local files)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [
        {"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}
    ]
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (
            (f"{layer_digest}/layer.tar", layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return destination


def build_pause_archive(pause_binary: Path, destination: Path) -> Path:
    return write_image_archive(
        destination,
        PAUSE_IMAGE,
        [LayerEntry("pause", content=pause_binary.read_bytes())],
        entrypoint=["/pause"],
    )


def busybox_applets(busybox: Path = BUSYBOX_BINARY) -> list[str]:
    listing = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout
    return sorted({name for name in listing.split() if name and name != "busybox"})


def build_busybox_archive(destination: Path, busybox: Path = BUSYBOX_BINARY) -> Path:
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} is missing: install Debian's busybox-static package")
    entries = [LayerEntry("bin/busybox", content=busybox.read_bytes())]
    entries.extend(
        LayerEntry(f"bin/{applet}", link_target="busybox") for applet in busybox_applets(busybox)
    )
    # Writable scratch places that programs expect to exist.
    entries.append(LayerEntry("tmp/.keep", content=b"", mode=0o644))
    return write_image_archive(destination, BUSYBOX_IMAGE, entries, command=["sh"])


def archive_images(archive: Path) -> dict[str, str]:
    """The image names a `docker save` archive carries, each with its image ID
    (the digest of its config). Reads only the archive's small index files."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member is not None else None
            if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
                raise ImageError(
                    f"{archive} is not a `docker save` archive: unexpected manifest.json"
                )
            images: dict[str, str] = {}
            for entry in manifest:
                tags = entry.get("RepoTags") or []
                if not tags:
                    continue
                config = tar.extractfile(str(entry.get("Config")))
                if config is None:
                    raise ImageError(f"{archive} is not a `docker save` archive: no config")
                image_id = f"sha256:{hashlib.sha256(config.read()).hexdigest()}"
                images.update((tag, image_id) for tag in tags)
    except (OSError, tarfile.TarError, KeyError, UnicodeDecodeError, ValueError) as error:
        raise ImageError(f"{archive} is not a `docker save` archive: {error}") from error
    if not images:
        # Pods name their image; an untagged image could never be used.
        raise ImageError(f"{archive} holds no named image (its manifest has no RepoTags)")
    return images


def archive_references(archive: Path) -> list[str]:
    """The image names a `docker save` archive carries."""
    return list(archive_images(archive))


def normalize_reference(reference: str) -> str:
    """The fully qualified name containerd stores ("busybox:1" → "docker.io/library/busybox:1")."""
    name = reference
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name = f"{name}:latest"
    return name


@dataclass(frozen=True)
class NodeImages:
    """The images of the node's containerd, driven through its `ctr` client."""

    ctr: Path
    socket: Path

    def import_archive(self, archive: Path) -> list[tuple[str, bool]]:
        """Import a `docker save` archive; (stored reference, changed) per image it names.

        When every name already holds the archive's image (same image ID), the
        archive is not read again: importing it would change nothing, and a
        driver image takes seconds to read.
        """
        wanted = {normalize_reference(r): i for r, i in archive_images(archive).items()}
        if all(image_id in self.image_ids(ref) for ref, image_id in wanted.items()):
            return [(reference, False) for reference in wanted]
        before = {reference: self.digest(reference) for reference in wanted}
        self._ctr("images", "import", str(archive))
        return [(ref, self.digest(ref) != before[ref]) for ref in wanted]

    def image_ids(self, reference: str) -> set[str]:
        """The image IDs (config digests) stored under `reference`: one per
        platform for an index, none when the name is unknown."""
        target = self.digest(reference)
        pending, ids = [target] if target else [], set()
        while pending:
            document = json.loads(self._ctr("content", "get", pending.pop()))
            pending.extend(m["digest"] for m in document.get("manifests") or [])
            config = document.get("config") or {}
            if config.get("digest"):
                ids.add(str(config["digest"]))
        return ids

    def digest(self, reference: str) -> str | None:
        """The manifest digest stored under `reference`, or None when there is none."""
        listing = self._ctr("images", "ls", f"name=={reference}")
        for line in listing.splitlines()[1:]:
            columns = line.split()  # REF TYPE DIGEST SIZE PLATFORMS LABELS
            if columns and columns[0] == reference:
                return columns[2]
        return None

    def _ctr(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.ctr), f"--address={self.socket}", f"--namespace={_CRI_NAMESPACE}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ImageError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout
