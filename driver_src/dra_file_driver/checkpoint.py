"""The checkpoint: which claims are prepared on this node, and with what.

It is the single source of truth of the driver's node state. Device files and
CDI specs are derived from it and can always be rebuilt from it; it is also
all that NodeUnprepareResources has once a claim is deleted from the API
server. It is replaced atomically (see atomicfile) and carries a format
version and a checksum of its content: rename makes a torn write impossible,
so a checksum mismatch means outside damage, which is reported instead of
being silently treated as "nothing prepared" (that would leak devices).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import atomicfile
from .prepared import PreparedClaim, PreparedDevice

FORMAT_VERSION = 1
FILE_NAME = "checkpoint.json"


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
    # which is what lets decode() verify the checksum. (No indent: json only
    # uses its fast C encoder without one.)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _checksum(claims_text: str) -> str:
    return "sha256:" + hashlib.sha256(claims_text.encode()).hexdigest()


def _document(claim_texts: Sequence[str]) -> bytes:
    # Same bytes as _canonical() of the list of claims, built from the
    # claims' own canonical texts so that unchanged claims need no encoding.
    claims_text = "[" + ",".join(claim_texts) + "]"
    checksum = _checksum(claims_text)
    return (
        f'{{"version":{FORMAT_VERSION},"checksum":"{checksum}","claims":{claims_text}}}\n'
    ).encode()


def _encode_claim(claim: PreparedClaim) -> str:
    return _canonical(_claim_to_json(claim))


def encode(claims: Sequence[PreparedClaim]) -> bytes:
    return _document([_encode_claim(c) for c in claims])


def decode(data: bytes, source: Path) -> list[PreparedClaim]:
    """Parse checkpoint content; raise CheckpointError saying what is wrong."""
    hint = f"checkpoint {source}"
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CheckpointError(f"{hint} is not valid JSON ({exc}); it is corrupt") from exc
    if not isinstance(document, dict):
        raise CheckpointError(f"{hint} is not a JSON object; it is corrupt")
    if document.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{hint} has format version {document.get('version')!r}, "
            f"this driver reads version {FORMAT_VERSION}"
        )
    claims_json = document.get("claims")
    if not isinstance(claims_json, list) or document.get("checksum") != _checksum(
        _canonical(claims_json)
    ):
        raise CheckpointError(f"{hint} fails its checksum; it is corrupt")
    try:
        return [_claim_from_json(c) for c in claims_json]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{hint} has a malformed claim entry: {exc!r}") from exc


class CheckpointFile:
    """The checkpoint file, and whether someone else replaced it since we last saw it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._seen: tuple[int, int, int] | None = None
        # Canonical text of each claim last saved: every prepare and unprepare
        # rewrites the whole checkpoint, and re-encoding every unchanged
        # claim each time would make a state change cost O(claims) encodes.
        self._texts: dict[str, tuple[PreparedClaim, str]] = {}

    def load(self) -> list[PreparedClaim]:
        """Read the checkpoint; a missing file means nothing is prepared."""
        try:
            with self.path.open("rb") as f:
                data = f.read()
                self._seen = _identity(os.fstat(f.fileno()))
        except FileNotFoundError:
            self._seen = None
            return []
        return decode(data, self.path)

    def save(self, claims: Sequence[PreparedClaim]) -> None:
        texts = {}
        for claim in claims:
            cached = self._texts.get(claim.uid)
            unchanged = cached is not None and (cached[0] is claim or cached[0] == claim)
            texts[claim.uid] = cached if cached and unchanged else (claim, _encode_claim(claim))
        # 0600: the checkpoint is the driver's private state.
        atomicfile.write_atomically(
            self.path, _document([text for _, text in texts.values()]), mode=0o600
        )
        self._texts = texts
        self._seen = _identity(self.path.stat())

    def changed_on_disk(self) -> bool:
        """True if the file is not the one last loaded or saved by this object.

        Every save replaces the file by rename, so a new inode (or a vanished
        file) means another process wrote it.
        """
        try:
            current: tuple[int, int, int] | None = _identity(self.path.stat())
        except FileNotFoundError:
            current = None
        return current != self._seen

    def leftover_temp_files(self) -> list[Path]:
        return atomicfile.leftover_temp_files(self.path.parent, FILE_NAME)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)
