"""Images assembled from local files, as containerd will read them."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from localcluster.images import (
    BUSYBOX_BINARY,
    ImageError,
    LayerEntry,
    archive_images,
    archive_references,
    build_busybox_archive,
    normalize_reference,
    write_image_archive,
)
from localcluster.versions import BUSYBOX_IMAGE


def _read(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None, name
        return member.read()


def test_archive_is_a_docker_save_layout_with_matching_digests(tmp_path: Path) -> None:
    archive = write_image_archive(
        tmp_path / "image.tar",
        "example.test/tool:1",
        [
            LayerEntry("bin/tool", content=b"#!/bin/sh\n"),
            LayerEntry("bin/alias", link_target="tool"),
        ],
        entrypoint=["/bin/tool"],
    )
    manifest = json.loads(_read(archive, "manifest.json"))
    assert manifest[0]["RepoTags"] == ["example.test/tool:1"]
    layer = _read(archive, manifest[0]["Layers"][0])
    config = json.loads(_read(archive, manifest[0]["Config"]))
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    assert (
        manifest[0]["Config"]
        == f"{hashlib.sha256(_read(archive, manifest[0]['Config'])).hexdigest()}.json"
    )
    with tarfile.open(fileobj=io.BytesIO(layer)) as layer_tar:
        names = {m.name: m for m in layer_tar.getmembers()}
    assert names["bin"].isdir()
    assert names["bin/alias"].issym()
    assert names["bin/alias"].linkname == "tool"
    assert names["bin/tool"].mode == 0o755


def test_same_inputs_give_the_same_image(tmp_path: Path) -> None:
    entries = [LayerEntry("a", content=b"x")]
    first = write_image_archive(tmp_path / "1.tar", "x:1", entries)
    second = write_image_archive(tmp_path / "2.tar", "x:1", entries)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.skipif(not BUSYBOX_BINARY.exists(), reason="needs Debian's busybox-static")
def test_busybox_image_has_a_shell_and_the_demo_tools(tmp_path: Path) -> None:
    archive = build_busybox_archive(tmp_path / "busybox.tar")
    assert archive_references(archive) == [BUSYBOX_IMAGE]
    manifest = json.loads(_read(archive, "manifest.json"))
    layer = _read(archive, manifest[0]["Layers"][0])
    with tarfile.open(fileobj=io.BytesIO(layer)) as layer_tar:
        names = set(layer_tar.getnames())
    assert {"bin/busybox", "bin/sh", "bin/cat", "bin/sleep"} <= names


def test_archive_images_name_each_image_with_its_id(tmp_path: Path) -> None:
    one = write_image_archive(tmp_path / "1.tar", "x:1", [LayerEntry("a", content=b"1")])
    other = write_image_archive(tmp_path / "2.tar", "x:1", [LayerEntry("a", content=b"2")])
    manifest = json.loads(_read(one, "manifest.json"))
    config_digest = hashlib.sha256(_read(one, manifest[0]["Config"])).hexdigest()
    # The image ID is the digest of the image's config, as containerd stores it.
    assert archive_images(one) == {"x:1": f"sha256:{config_digest}"}
    # Same name, other content: another ID.
    assert archive_images(other)["x:1"] != archive_images(one)["x:1"]


def test_archive_whose_config_is_missing_is_refused(tmp_path: Path) -> None:
    archive = _tar_with(
        tmp_path / "image.tar",
        {"manifest.json": b'[{"Config": "absent.json", "RepoTags": ["x:1"]}]'},
    )
    with pytest.raises(ImageError, match=re.escape("is not a `docker save` archive")):
        archive_images(archive)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("busybox:1.35", "docker.io/library/busybox:1.35"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("someone/tool:2", "docker.io/someone/tool:2"),
        ("registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10.1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("dra-file-driver:abc123", "docker.io/library/dra-file-driver:abc123"),
    ],
)
def test_references_are_normalized_as_containerd_stores_them(given: str, stored: str) -> None:
    assert normalize_reference(given) == stored


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (None, "is not a `docker save` archive"),
        ({"layer.tar": b""}, "is not a `docker save` archive"),
        ({"manifest.json": b"{not json"}, "is not a `docker save` archive"),
        ({"manifest.json": b'{"Config": "c.json"}'}, "unexpected manifest.json"),
        ({"manifest.json": b'[{"Config": "c.json", "RepoTags": null}]'}, "holds no named image"),
    ],
    ids=["not-a-tar", "no-manifest", "manifest-not-json", "manifest-not-a-list", "untagged"],
)
def test_unusable_archive_is_refused_with_its_reason(
    tmp_path: Path, members: dict[str, bytes] | None, message: str
) -> None:
    archive = tmp_path / "image.tar"
    if members is None:
        archive.write_text("plain text, not an archive\n")
    else:
        _tar_with(archive, members)
    with pytest.raises(ImageError, match=re.escape(message)) as raised:
        archive_references(archive)
    assert str(archive) in str(raised.value)


def test_missing_archive_is_refused_with_its_path(tmp_path: Path) -> None:
    absent = tmp_path / "absent.tar"
    with pytest.raises(ImageError, match=re.escape(str(absent))):
        archive_references(absent)
