from __future__ import annotations

import json
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
