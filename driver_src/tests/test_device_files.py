"""File editing: atomic replacement and the rendering of device files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dra_file_driver import atomicfile, device_files
from dra_file_driver.prepared import PreparedClaim, PreparedDevice


def test_render_one_name_per_line_without_duplicates() -> None:
    assert device_files.render(["b", "a", "b", "c", "a"]) == b"b\na\nc\n"
    assert device_files.render([]) == b""


def test_write_replaces_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "file1"
    assert device_files.write(path, ["pod-a", "pod-b"])
    assert path.read_text() == "pod-a\npod-b\n"
    assert device_files.write(path, ["pod-b"])
    assert path.read_text() == "pod-b\n"


def test_write_skips_identical_content(tmp_path: Path) -> None:
    path = tmp_path / "file1"
    device_files.write(path, ["pod-a"])
    inode = path.stat().st_ino
    assert not device_files.write(path, ["pod-a"])
    assert path.stat().st_ino == inode


def test_atomic_write_replaces_inode_and_sets_mode(tmp_path: Path) -> None:
    path = tmp_path / "target"
    path.write_text("old")
    old_inode = path.stat().st_ino
    atomicfile.write_atomically(path, b"new", mode=0o640)
    assert path.read_bytes() == b"new"
    assert path.stat().st_ino != old_inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert atomicfile.leftover_temp_files(tmp_path) == []


def test_failed_write_keeps_old_content_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "file1"
    path.write_text("pod-a\n")

    def broken_fchmod(fd: int, mode: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fchmod", broken_fchmod)
    with pytest.raises(OSError, match="Input/output"):
        device_files.write(path, ["pod-a", "pod-b"])
    assert path.read_text() == "pod-a\n"
    assert atomicfile.leftover_temp_files(tmp_path) == []


def test_leftover_temp_files_filters_by_target_prefix(tmp_path: Path) -> None:
    ours = tmp_path / f"{atomicfile.temp_prefix('file1')}abc"
    foreign = tmp_path / f"{atomicfile.temp_prefix('other')}abc"
    plain = tmp_path / "file1"
    for p in (ours, foreign, plain):
        p.write_text("")
    assert device_files.leftover_temp_files(tmp_path) == [ours]
    assert sorted(atomicfile.leftover_temp_files(tmp_path)) == sorted([ours, foreign])
    assert atomicfile.leftover_temp_files(tmp_path / "missing") == []


@pytest.mark.parametrize("durable", [True, False])
def test_remove(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "x"
    path.write_text("")
    assert atomicfile.remove(path, durable=durable)
    assert not path.exists()
    assert not atomicfile.remove(path, durable=durable)


def test_only_durable_writes_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        flushed.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    atomicfile.write_atomically(tmp_path / "derived", b"x", durable=False)
    assert flushed == []
    atomicfile.write_atomically(tmp_path / "state", b"x")
    assert len(flushed) == 2  # the file, then its directory


def _claim(uid: str, pods: tuple[str, ...], *paths: str) -> PreparedClaim:
    devices = tuple(PreparedDevice(f"r{i}", "node", f"d{i}", p) for i, p in enumerate(paths))
    return PreparedClaim(uid, "ns", uid, pods, devices)


def test_pod_index_lists_pods_in_the_order_claims_were_prepared() -> None:
    index = device_files.PodIndex(["/f/file1", "/f/file2"])
    a, b = _claim("a", ("pa",), "/f/file1"), _claim("b", ("pb1", "pb2"), "/f/file1", "/f/file1")
    c = _claim("c", ("pc",), "/f/file2", "/f/file1")
    index.reset([a, b])
    index.add(c)
    assert index.pods("/f/file1") == ["pa", "pb1", "pb2", "pc"]
    assert index.pods("/f/file2") == ["pc"]
    index.remove(a)
    index.add(a)  # prepared again: now the last
    assert index.pods("/f/file1") == ["pb1", "pb2", "pc", "pa"]
    index.reset([c])
    assert index.pods("/f/file1") == ["pc"]


def test_pod_index_keeps_a_file_of_an_old_configuration_only_while_claimed() -> None:
    index = device_files.PodIndex(["/f/file1"])
    old = _claim("old", ("p",), "/old/file9")
    index.reset([old])
    assert index.paths() == ["/f/file1", "/old/file9"]
    index.remove(old)
    assert index.paths() == ["/f/file1"]
    assert index.pods("/f/file1") == []
    assert index.pods("/old/file9") == []
