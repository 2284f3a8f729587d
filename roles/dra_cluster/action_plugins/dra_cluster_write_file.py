"""Action dra_cluster_write_file: make a file of the controller hold the given
content and mode, in Ansible's own process.

The role writes two small files on the controller (where its tasks run):
kind's cluster config and the kind cluster's kubeconfig. ansible.builtin.copy
and ansible.builtin.template start a new Python process for their module on
every run, 1.5-2.3 s a task on the machines this project runs on, even when
the file is already right; this action compares first and then writes only
what differs, without a module.

Arguments:
  dest     the file's path on the controller
  content  the text it must hold (written as UTF-8)
  mode     its permissions, an octal string such as "0600"

A file with other content is replaced atomically (a temporary file beside it,
renamed over it), keeping its owner; a file with only another mode is
chmod-ed. Reports changed when either differs; in check mode it reports the
change it would make and writes nothing. With --diff the result has the
content and mode before and after. Fails with a message naming the file
when it cannot be read or written (a missing directory is not created).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def parse_mode(mode: object) -> int:
    """An octal permission string ("0644") as a number; anything else is refused.

    A number is refused too: YAML reads an unquoted 0644 as 420, which is not
    what was meant.
    """
    if not isinstance(mode, str) or not mode.strip():
        raise ValueError(f"mode must be an octal string such as '0644', not {mode!r}")
    try:
        value = int(mode, 8)
    except ValueError:
        raise ValueError(f"mode must be an octal string such as '0644', not {mode!r}") from None
    if not 0 <= value <= 0o7777:
        raise ValueError(f"mode {mode!r} is not a file permission (0000 to 7777)")
    return value


def current_state(path: Path) -> tuple[bytes, int] | None:
    """(content, permission bits) of the file at path, None if there is none."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise IsADirectoryError(f"{path} is not a regular file")
    return path.read_bytes(), stat.S_IMODE(status.st_mode)


def replace_content(path: Path, content: bytes, mode: int) -> None:
    """Write content to path with mode, atomically: readers see the old file or the new one."""
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            os.fchmod(handle.fileno(), mode)
            # Keep the owner of the file replaced (only root can give files away).
            if old is not None and os.geteuid() == 0:
                os.fchown(handle.fileno(), old.st_uid, old.st_gid)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _diff(dest: str, before: tuple[bytes, int] | None, wanted: bytes, mode: int) -> list[Any]:
    """What --diff shows: the text before and after, and the mode when it differs."""
    if before is None:
        return [
            {
                "before_header": f"{dest} (absent)",
                "after_header": dest,
                "before": "",
                "after": wanted.decode(),
            }
        ]
    diffs: list[Any] = []
    if before[0] != wanted:
        diffs.append(
            {
                "before_header": dest,
                "after_header": dest,
                "before": before[0].decode(errors="replace"),
                "after": wanted.decode(),
            }
        )
    if before[1] != mode:
        diffs.append(
            {
                "before_header": dest,
                "after_header": dest,
                "before": {"mode": f"{before[1]:04o}"},
                "after": {"mode": f"{mode:04o}"},
            }
        )
    return diffs


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("dest", "content", "mode"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        dest, content = self._task.args.get("dest"), self._task.args.get("content")
        if not isinstance(dest, str) or not dest:
            raise AnsibleActionFail("dest must be a non-empty path")
        if not isinstance(content, str):
            raise AnsibleActionFail(f"content must be a string, not {type(content).__name__}")
        try:
            mode = parse_mode(self._task.args.get("mode"))
        except ValueError as error:
            raise AnsibleActionFail(str(error)) from error
        path = Path(dest)
        wanted = content.encode()
        try:
            before = current_state(path)
        except OSError as error:
            raise AnsibleActionFail(f"cannot read {dest}: {error}") from error
        content_differs = before is None or before[0] != wanted
        mode_differs = before is None or before[1] != mode
        if self._task.diff and (content_differs or mode_differs):
            result["diff"] = _diff(dest, before, wanted, mode)
        if (content_differs or mode_differs) and not self._task.check_mode:
            try:
                if content_differs:
                    replace_content(path, wanted, mode)
                else:
                    path.chmod(mode)
            except OSError as error:
                raise AnsibleActionFail(f"cannot write {dest}: {error}") from error
        result.update(dest=dest, mode=f"{mode:04o}", changed=content_differs or mode_differs)
        return result
