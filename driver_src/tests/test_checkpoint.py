from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from dra_file_driver import checkpoint
from dra_file_driver.checkpoint import CheckpointError, CheckpointFile
from dra_file_driver.prepared import PreparedClaim, PreparedDevice

CLAIMS = [
    PreparedClaim(
        uid="u1",
        namespace="ns",
        name="c1",
        pods=("pod-a", "pod-b"),
        devices=(PreparedDevice("req", "node-a", "file1", "/etc/dra/file1"),),
    ),
    PreparedClaim(
        uid="u2",
        namespace="ns",
        name="c2",
        pods=(),
        devices=(
            PreparedDevice("a", "node-a", "file2", "/etc/dra/file2", share_id="s1"),
            PreparedDevice("b", "node-a", "file2", "/etc/dra/file2"),
        ),
    ),
]


def test_round_trip_keeps_order_and_fields(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    assert CheckpointFile(tmp_path).load() == CLAIMS
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_missing_file_means_nothing_prepared(tmp_path: Path) -> None:
    assert CheckpointFile(tmp_path).load() == []


def test_document_has_version_and_checksum(tmp_path: Path) -> None:
    CheckpointFile(tmp_path).save(CLAIMS)
    document = json.loads((tmp_path / checkpoint.FILE_NAME).read_text())
    assert document["version"] == checkpoint.FORMAT_VERSION
    assert document["checksum"].startswith("sha256:")


def _tamper(path: Path, change: str) -> None:
    document = json.loads(path.read_text())
    if change == "pod":
        document["claims"][0]["pods"].append("intruder")
    elif change == "version":
        document["version"] = 99
    elif change == "entry":
        del document["claims"][0]["uid"]
        document["checksum"] = checkpoint._checksum(checkpoint._canonical(document["claims"]))
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("pod", "fails its checksum"),
        ("version", "format version 99"),
        ("entry", "malformed claim entry"),
    ],
)
def test_damaged_checkpoint_is_reported(tmp_path: Path, change: str, message: str) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    _tamper(store.path, change)
    with pytest.raises(CheckpointError, match=message):
        CheckpointFile(tmp_path).load()


def test_truncated_checkpoint_is_reported(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CheckpointFile(tmp_path).load()


def test_changed_on_disk_detects_other_writers(tmp_path: Path) -> None:
    mine, other = CheckpointFile(tmp_path), CheckpointFile(tmp_path)
    mine.save(CLAIMS)
    assert not mine.changed_on_disk()
    other.save(CLAIMS[:1])
    assert mine.changed_on_disk()
    mine.load()
    assert not mine.changed_on_disk()
    mine.path.unlink()
    assert mine.changed_on_disk()


def test_incremental_saves_write_what_a_full_encode_writes(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    store.save(CLAIMS[1:])
    store.save([*CLAIMS[1:], CLAIMS[0]])
    assert store.path.read_bytes() == checkpoint.encode([*CLAIMS[1:], CLAIMS[0]])
    assert CheckpointFile(tmp_path).load() == [*CLAIMS[1:], CLAIMS[0]]


def test_reformatted_but_intact_checkpoint_is_accepted(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    store.path.write_text(json.dumps(json.loads(store.path.read_text()), indent=4))
    assert CheckpointFile(tmp_path).load() == CLAIMS


# -- the journal (format 2) ------------------------------------------------

THIRD = PreparedClaim(
    uid="u3",
    namespace="ns",
    name="c3",
    pods=("pod-c",),
    devices=(PreparedDevice("req", "node-a", "file3", "/etc/dra/file3"),),
)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_commit_appends_one_line_and_reads_back(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.commit(CLAIMS, CLAIMS, ())  # nothing read yet: a snapshot
    assert len(_lines(store.path)) == 1
    store.commit([CLAIMS[1], THIRD], [THIRD], [CLAIMS[0].uid])
    store.commit([CLAIMS[1], THIRD, CLAIMS[0]], [CLAIMS[0]], ())
    lines = _lines(store.path)
    assert len(lines) == 3
    assert json.loads(lines[2])["change"]["seq"] == 2
    assert CheckpointFile(tmp_path).load() == [CLAIMS[1], THIRD, CLAIMS[0]]
    assert not store.changed_on_disk()


def test_a_loaded_checkpoint_is_appended_to(tmp_path: Path) -> None:
    CheckpointFile(tmp_path).save(CLAIMS)
    store = CheckpointFile(tmp_path)
    store.load()
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    assert len(_lines(store.path)) == 2
    assert CheckpointFile(tmp_path).load() == [*CLAIMS, THIRD]


def test_changes_as_large_as_the_snapshot_are_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "COMPACT_MIN_BYTES", 0)
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    claims = list(CLAIMS)
    counts = []
    for i in range(8):
        claim = PreparedClaim(f"x{i}", "ns", f"x{i}", (f"p{i}",), THIRD.devices)
        claims.append(claim)
        store.commit(claims, [claim], ())
        counts.append(len(_lines(store.path)))
        # At most the snapshot, as much again in changes, and the last change.
        snapshot = len(checkpoint.encode(claims))
        assert store.path.stat().st_size <= 2 * snapshot + len(_lines(store.path)[-1])
    assert 1 in counts[1:]  # a snapshot was written after appends
    assert CheckpointFile(tmp_path).load() == claims


def test_a_last_line_cut_short_is_ignored_and_replaced_by_a_snapshot(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    full = store.path.read_bytes()
    cut = full[: len(full) - 10]  # what a crash in the middle of the append leaves
    store.path.write_bytes(cut)
    reader = CheckpointFile(tmp_path)
    assert reader.load() == CLAIMS
    reader.commit(CLAIMS[:1], (), [CLAIMS[1].uid])
    assert len(_lines(reader.path)) == 1  # not appended after the torn line
    assert CheckpointFile(tmp_path).load() == CLAIMS[:1]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("pod", "change 1 fails its checksum"),
        ("drop", "sequence number 2; a change is missing"),
        ("garbage", "not valid JSON"),
    ],
)
def test_a_damaged_or_missing_change_is_reported(tmp_path: Path, damage: str, message: str) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS[:1])
    store.commit(CLAIMS, CLAIMS[1:], ())
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    lines = _lines(store.path)
    if damage == "pod":
        lines[1] = lines[1].replace(b"file2", b"file9")
    elif damage == "drop":
        del lines[1]
    else:
        lines[1] = b"}{\n"
    store.path.write_bytes(b"".join(lines))
    with pytest.raises(CheckpointError, match=message):
        CheckpointFile(tmp_path).load()


def _format1_reader_accepts(data: bytes) -> bool:
    """What a driver that reads only format 1 does with data: parse, check the version."""
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("version") == 1


def _format1(claims: list[PreparedClaim], *, reformatted: bool) -> bytes:
    """A checkpoint as the format-1 driver wrote it: one compact line (or reformatted)."""
    claims_text = checkpoint._canonical([checkpoint._claim_to_json(c) for c in claims])
    checksum = checkpoint._checksum(claims_text)
    if reformatted:
        document = {"version": 1, "checksum": checksum, "claims": json.loads(claims_text)}
        return json.dumps(document, indent=2).encode()
    return f'{{"version":1,"checksum":"{checksum}","claims":{claims_text}}}\n'.encode()


@pytest.mark.parametrize("reformatted", [False, True])
def test_a_format1_file_is_read_and_the_first_commit_converts_it(
    tmp_path: Path, reformatted: bool
) -> None:
    (tmp_path / checkpoint.FILE_NAME).write_bytes(_format1(CLAIMS, reformatted=reformatted))
    assert _format1_reader_accepts((tmp_path / checkpoint.FILE_NAME).read_bytes())
    store = CheckpointFile(tmp_path)
    assert store.load() == CLAIMS
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    assert len(_lines(store.path)) == 1
    assert json.loads(store.path.read_bytes())["version"] == 2
    assert CheckpointFile(tmp_path).load() == [*CLAIMS, THIRD]


def test_a_format1_line_followed_by_changes_is_refused(tmp_path: Path) -> None:
    # Format 1 never had change lines: such a file was not written by a driver.
    (tmp_path / checkpoint.FILE_NAME).write_bytes(
        _format1(CLAIMS, reformatted=False) + _lines_of_a_journal(tmp_path / "other")[1]
    )
    with pytest.raises(CheckpointError, match="format version 1"):
        CheckpointFile(tmp_path).load()


def _lines_of_a_journal(directory: Path) -> list[bytes]:
    directory.mkdir()
    store = CheckpointFile(directory)
    store.save(CLAIMS)
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    return _lines(store.path)


def test_a_driver_reading_only_format1_refuses_both_shapes_of_format2(tmp_path: Path) -> None:
    # During an upgrade the old driver must refuse the file (and serve
    # errors), never read it as "nothing prepared".
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    assert not _format1_reader_accepts(store.path.read_bytes())
    store.commit([*CLAIMS, THIRD], [THIRD], ())
    assert not _format1_reader_accepts(store.path.read_bytes())


def test_a_failed_append_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointFile(tmp_path)
    store.save(CLAIMS)
    before = store.path.read_bytes()

    def disk_error(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "fdatasync", disk_error)
        with pytest.raises(OSError, match="Input/output"):
            store.commit([*CLAIMS, THIRD], [THIRD], ())
    assert store.path.read_bytes() == before
    assert CheckpointFile(tmp_path).load() == CLAIMS
    store.commit(CLAIMS[:1], (), [CLAIMS[1].uid])  # the next write is a snapshot
    assert len(_lines(store.path)) == 1
    assert CheckpointFile(tmp_path).load() == CLAIMS[:1]


def test_changed_on_disk_sees_an_append_by_another_writer(tmp_path: Path) -> None:
    mine, other = CheckpointFile(tmp_path), CheckpointFile(tmp_path)
    mine.save(CLAIMS)
    other.load()
    other.commit([*CLAIMS, THIRD], [THIRD], ())
    assert mine.changed_on_disk()
    assert mine.load() == [*CLAIMS, THIRD]
    assert not mine.changed_on_disk()
