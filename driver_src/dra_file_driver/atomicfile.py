"""Crash-safe file replacement, and durable appends.

Every file the driver owns (checkpoint, CDI specs, device files) is replaced
as a whole: the new content goes to a temporary file in the same directory
and is renamed over the target. A reader, or the driver after a ``kill -9``,
therefore sees either the old or the new content, never a torn mix.

Durable writes also fsync the file before the rename and the directory
after it, so the change survives a power loss too. Only the checkpoint needs
that: CDI specs and device files are derived from it, and the driver
rewrites them from it at start before it serves anything, so for them the
rename alone is enough (and saves two disk flushes per file and operation).

The checkpoint's journal is the one file that grows by appends instead:
append_durably writes one line and flushes it (fdatasync), which a crash
can cut short but never reorder, so a reader only has to ignore a last line
without its newline.

Temporary files start with a dot and contain ``TEMP_MARKER`` so that nothing
that loads a directory (container runtimes only read ``*.json``/``*.yaml``
CDI specs, the kubelet ignores dot files) picks them up, and so that the
driver can delete the ones a crash left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_MARKER = ".tmp-"


def temp_prefix(target_name: str) -> str:
    """Prefix of the temporary files used to replace the file named target_name."""
    return f".{target_name}{TEMP_MARKER}"


def write_atomically(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace path with data so that a crash leaves either old or new content."""
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            # mkstemp creates 0600; device files and CDI specs must be
            # readable by the container runtime and by consumers.
            os.fchmod(tmp_file.fileno(), mode)
            if durable:
                os.fsync(tmp_file.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_directory(path.parent)


def write_if_changed(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> bool:
    """Write atomically unless path already holds data; return True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomically(path, data, mode, durable=durable)
    return True


def remove(path: Path, *, durable: bool = True) -> bool:
    """Delete path if present; return True if it existed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if durable:
        fsync_directory(path.parent)
    return True


def fsync_directory(directory: Path) -> None:
    """Persist a rename or unlink in directory."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def leftover_temp_files(directory: Path, target_prefix: str = "") -> list[Path]:
    """Temporary files in directory left by an interrupted write_atomically.

    Only temporaries of targets whose name starts with target_prefix are
    listed, so that a directory shared with other writers (the CDI directory)
    is only cleaned of this driver's files.
    """
    prefix = "." + target_prefix
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return [e for e in entries if e.name.startswith(prefix) and TEMP_MARKER in e.name]


def append_durably(path: Path, data: bytes) -> tuple[int, int, int]:
    """Append data to the existing file path and flush it to disk.

    Returns the file's (inode, mtime_ns, size) after the append. If the
    append fails, the file is cut back to its old length; should that fail
    too, what is left of data lacks its end (callers append whole lines, so
    a reader sees a last line without its newline).
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        old_size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # fdatasync: the data and the new size, not the timestamps.
            os.fdatasync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, old_size)
            raise
        st = os.fstat(fd)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    finally:
        os.close(fd)
