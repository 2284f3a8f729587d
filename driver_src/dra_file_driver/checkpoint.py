"""The checkpoint: which claims are prepared on this node, and with what.

It is the single source of truth of the driver's node state. Device files and
CDI specs are derived from it and can always be rebuilt from it; it is also
all that NodeUnprepareResources has once a claim is deleted from the API
server.

Format 2 is a journal in JSON Lines: the first line is a snapshot of every
prepared claim, each further line one committed change (claims prepared,
claim UIDs unprepared). A change is appended and flushed to disk with
fdatasync before the kubelet hears of it: one small write and one flush,
where rewriting the whole file by rename costs a temporary file, two
flushes and a rename, and grows with the number of claims. Once the
changes outweigh the snapshot, the next commit writes a fresh snapshot (the
"compaction"), atomically, as format 1 wrote every time (see atomicfile).

Every line carries a checksum of its content, and every change its sequence
number, so outside damage and a lost line are reported instead of being
silently read as fewer claims (that would leak devices). The one thing a
crash can leave is a last line cut short (no newline): an append that was
never flushed, so never answered; it is ignored, and the next commit writes
a snapshot rather than append after it.

The file keeps format 1's name, so that during an upgrade a driver that only
reads format 1 finds a file it refuses (the header says version 2) and
serves errors, instead of finding no file, taking that for "nothing
prepared" and deleting every CDI spec. Format 1 files are read, and the first
commit turns them into format 2.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomicfile
from .prepared import PreparedClaim, PreparedDevice

FORMAT_VERSION = 2
# Format 1: one JSON document, rewritten whole on every change.
_SNAPSHOT_ONLY_VERSION = 1
FILE_NAME = "checkpoint.json"
# A commit writes a snapshot instead of appending once the changes since the
# last snapshot are at least this large and at least as large as it: the
# file stays within about twice the size of the state, and the O(claims)
# cost of a snapshot is spread over as many O(1) appends.
COMPACT_MIN_BYTES = 64 * 1024


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be trusted."""


def _claim_to_json(claim: PreparedClaim) -> dict[str, Any]:
    return {
        "uid": claim.uid,
        "namespace": claim.namespace,
        "name": claim.name,
        "pods": list(claim.pods),
        "devices": [
            {
                "request": d.request,
                "pool": d.pool,
                "device": d.device,
                "path": d.path,
                **({"shareID": d.share_id} if d.share_id is not None else {}),
            }
            for d in claim.devices
        ],
    }


def _claim_from_json(data: Mapping[str, Any]) -> PreparedClaim:
    return PreparedClaim(
        uid=str(data["uid"]),
        namespace=str(data["namespace"]),
        name=str(data["name"]),
        pods=tuple(str(p) for p in data["pods"]),
        devices=tuple(
            PreparedDevice(
                request=str(d["request"]),
                pool=str(d["pool"]),
                device=str(d["device"]),
                path=str(d["path"]),
                share_id=str(d["shareID"]) if "shareID" in d else None,
            )
            for d in data["devices"]
        ),
    )


def _canonical(value: Any) -> str:
    # Compact, key-sorted, and therefore reproducible from the parsed value,
    # which is what lets the reader verify a checksum. (No indent: json only
    # uses its fast C encoder without one.)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _checksum(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _snapshot_line(claim_texts: Sequence[str]) -> bytes:
    # The claims' list is the same text as _canonical() of it, built from the
    # claims' own canonical texts so that unchanged claims need no encoding.
    claims_text = "[" + ",".join(claim_texts) + "]"
    checksum = _checksum(claims_text)
    return (
        f'{{"version":{FORMAT_VERSION},"checksum":"{checksum}","claims":{claims_text}}}\n'
    ).encode()


def _change_line(seq: int, prepared_texts: Sequence[str], unprepared: Collection[str]) -> bytes:
    # Keys in sorted order, so that the text is _canonical() of the change.
    change_text = (
        f'{{"prepared":[{",".join(prepared_texts)}],"seq":{seq},'
        f'"unprepared":{_canonical(list(unprepared))}}}'
    )
    return f'{{"change":{change_text},"checksum":"{_checksum(change_text)}"}}\n'.encode()


def _encode_claim(claim: PreparedClaim) -> str:
    return _canonical(_claim_to_json(claim))


def encode(claims: Sequence[PreparedClaim]) -> bytes:
    """A checkpoint holding claims, as a snapshot alone."""
    return _snapshot_line([_encode_claim(c) for c in claims])


@dataclass(frozen=True)
class _Contents:
    claims: list[PreparedClaim]
    changes: int  # change lines read after the snapshot
    snapshot_bytes: int
    change_bytes: int  # the complete change lines
    # False if a change must not be appended: a last line cut short was
    # ignored, or the file is in format 1.
    appendable: bool


def decode(data: bytes, source: Path) -> list[PreparedClaim]:
    """Parse checkpoint content; raise CheckpointError saying what is wrong."""
    return _decode(data, source).claims


def _decode(data: bytes, source: Path) -> _Contents:
    hint = f"checkpoint {source}"
    first, newline, _ = data.partition(b"\n")
    try:
        header = _json_object(first, hint) if newline else None
    except CheckpointError:
        header = None
    body = data[len(first) + 1 :]
    if header is None or (header.get("version") == _SNAPSHOT_ONLY_VERSION and not body.strip()):
        # One document: format 1 as written (one line) or reformatted by hand.
        return _decode_document(data, hint)
    claims = _snapshot_claims(header, hint, accepted=(FORMAT_VERSION,))
    complete, torn = body, False
    if body and not body.endswith(b"\n"):
        complete, torn = body[: body.rfind(b"\n") + 1], True
    state = {c.uid: c for c in claims}
    lines = complete.splitlines()
    for seq, line in enumerate(lines, start=1):
        _apply_change(state, _change(line, seq, hint))
    return _Contents(
        claims=list(state.values()),
        changes=len(lines),
        snapshot_bytes=len(first) + 1,
        change_bytes=len(complete),
        appendable=not torn,
    )


def _decode_document(data: bytes, hint: str) -> _Contents:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CheckpointError(f"{hint} is not valid JSON ({exc}); it is corrupt") from exc
    if not isinstance(document, dict):
        raise CheckpointError(f"{hint} is not a JSON object; it is corrupt")
    # A format 2 snapshot is one line; reformatted, it still holds all there is.
    claims = _snapshot_claims(document, hint, accepted=(_SNAPSHOT_ONLY_VERSION, FORMAT_VERSION))
    # Never appended to: the first commit writes a snapshot of format 2.
    return _Contents(claims, 0, len(data), 0, appendable=False)


def _json_object(line: bytes, hint: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise CheckpointError(
            f"{hint} has a line that is not valid JSON ({exc}); it is corrupt"
        ) from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{hint} has a line that is not a JSON object; it is corrupt")
    return value


def _snapshot_claims(
    document: Mapping[str, Any], hint: str, accepted: Collection[int]
) -> list[PreparedClaim]:
    if document.get("version") not in accepted:
        raise CheckpointError(
            f"{hint} has format version {document.get('version')!r}, this driver reads "
            f"version {' and '.join(str(v) for v in sorted(accepted))}"
        )
    claims_json = document.get("claims")
    if not isinstance(claims_json, list) or document.get("checksum") != _checksum(
        _canonical(claims_json)
    ):
        raise CheckpointError(f"{hint} fails its checksum; it is corrupt")
    return _claims_from_json(claims_json, hint)


def _claims_from_json(claims_json: list[Any], hint: str) -> list[PreparedClaim]:
    try:
        return [_claim_from_json(c) for c in claims_json]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{hint} has a malformed claim entry: {exc!r}") from exc


@dataclass(frozen=True)
class _ChangeLine:
    prepared: list[PreparedClaim]
    unprepared: list[str]


def _change(line: bytes, seq: int, hint: str) -> _ChangeLine:
    record = _json_object(line, hint)
    change = record.get("change")
    if not isinstance(change, dict) or record.get("checksum") != _checksum(_canonical(change)):
        raise CheckpointError(f"{hint}: change {seq} fails its checksum; it is corrupt")
    if change.get("seq") != seq:
        raise CheckpointError(
            f"{hint}: change {seq} has sequence number {change.get('seq')!r}; "
            "a change is missing or out of order, it is corrupt"
        )
    prepared, unprepared = change.get("prepared"), change.get("unprepared")
    if not isinstance(prepared, list) or not isinstance(unprepared, list):
        raise CheckpointError(f"{hint}: change {seq} is malformed")
    return _ChangeLine(_claims_from_json(prepared, hint), [str(uid) for uid in unprepared])


def _apply_change(state: dict[str, PreparedClaim], change: _ChangeLine) -> None:
    for uid in change.unprepared:
        state.pop(uid, None)
    for claim in change.prepared:
        state[claim.uid] = claim


class CheckpointFile:
    """The checkpoint file, and whether someone else changed it since we last saw it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._seen: tuple[int, int, int] | None = None
        # Canonical text of each claim in the checkpoint: a snapshot then
        # encodes only the claims it has not seen.
        self._texts: dict[str, tuple[PreparedClaim, str]] = {}
        # Whether the next change may be appended, and the file's make-up
        # then: changes since the snapshot, and the bytes of each part.
        self._appendable = False
        self._changes = 0
        self._snapshot_bytes = 0
        self._change_bytes = 0

    def load(self) -> list[PreparedClaim]:
        """Read the checkpoint; a missing file means nothing is prepared."""
        self._forget(None)  # until the file has been read whole and found sound
        try:
            with self.path.open("rb") as f:
                data = f.read()
                identity = _identity(os.fstat(f.fileno()))
        except FileNotFoundError:
            return []
        contents = _decode(data, self.path)
        self._seen = identity
        self._appendable = contents.appendable
        self._changes = contents.changes
        self._snapshot_bytes = contents.snapshot_bytes
        self._change_bytes = contents.change_bytes
        return contents.claims

    def commit(
        self,
        claims: Collection[PreparedClaim],
        prepared: Sequence[PreparedClaim],
        unprepared: Collection[str],
    ) -> None:
        """Make the file hold claims: the claims it held, plus prepared, minus unprepared.

        Appends the change, or writes a snapshot of claims when the file
        cannot take an append (never read or written by this object, a torn
        last line, format 1) or the changes have grown as large as the
        snapshot. The caller must hold the state lock and have loaded the file
        if another process changed it (see changed_on_disk). Returns once the
        change is on disk; raises OSError if it could not be written, and the
        file then still holds the claims it held before.
        """
        compact = self._change_bytes >= max(COMPACT_MIN_BYTES, self._snapshot_bytes)
        if not self._appendable or compact:
            self.save(claims)
            return
        line = _change_line(self._changes + 1, [self._text(c) for c in prepared], unprepared)
        try:
            identity = atomicfile.append_durably(self.path, line)
        except OSError:
            # The append is undone or left as a torn last line; either way
            # a snapshot is the next write.
            self._forget(self._seen)
            raise
        for uid in unprepared:
            self._texts.pop(uid, None)
        self._seen = identity
        self._changes += 1
        self._change_bytes += len(line)

    def save(self, claims: Iterable[PreparedClaim]) -> None:
        """Replace the file with a snapshot holding claims."""
        texts = {c.uid: (c, self._text(c)) for c in claims}
        line = _snapshot_line([text for _, text in texts.values()])
        # 0600: the checkpoint is the driver's private state.
        atomicfile.write_atomically(self.path, line, mode=0o600)
        self._texts = texts
        self._seen = _identity(self.path.stat())
        self._appendable = True
        self._changes = 0
        self._snapshot_bytes = len(line)
        self._change_bytes = 0

    def changed_on_disk(self) -> bool:
        """True if the file is not the one last loaded or written by this object.

        Every write either replaces the file by rename (a new inode) or
        appends to it (a new size), so a difference means another process
        wrote it.
        """
        try:
            current: tuple[int, int, int] | None = _identity(self.path.stat())
        except FileNotFoundError:
            current = None
        return current != self._seen

    def leftover_temp_files(self) -> list[Path]:
        return atomicfile.leftover_temp_files(self.path.parent, FILE_NAME)

    def _text(self, claim: PreparedClaim) -> str:
        cached = self._texts.get(claim.uid)
        if cached is not None and (cached[0] is claim or cached[0] == claim):
            return cached[1]
        text = _encode_claim(claim)
        self._texts[claim.uid] = (claim, text)
        return text

    def _forget(self, seen: tuple[int, int, int] | None) -> None:
        self._seen = seen
        self._appendable = False
        self._changes = self._snapshot_bytes = self._change_bytes = 0


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)
