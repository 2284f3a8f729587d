"""Action dra_cluster_run_with_progress: run a command on the controller, in
Ansible's own process: a long command with its progress shown while it runs,
or (read_only) a quick probe.

Long commands: ansible.builtin.command shows a command's output only when it
has ended: a first run that builds Kubernetes or kind's node image (15
minutes and more) would print nothing until then, and its progress only on
failure. This action passes every line the command writes to stderr on to
the screen as it comes, prefixed with the task's label.

Probes (read_only: true): ansible.builtin.command starts a new Python
process for its module on every task, which costs 0.6-2.3 s a task on the
machines this project runs on; `kind version` itself takes milliseconds. A
probe reads and changes nothing, so it also runs in check mode and never
reports a change. Its stderr is part of the result and not shown as it comes.

Either way the command runs on the controller (where the tasks of the roles
run: their host is the controller), from an argv list, without a shell.

Arguments:
  argv         the command, a list of strings (no shell)
  environment  variables added to the controller's environment (dict)
  label        prefix of the progress lines (default: the program's name)
  read_only    the command changes nothing: run it in check mode too, report
               no change, show no progress lines (default: false)

Returns rc, stdout, stderr (and their _lines), cmd, msg, start/end/delta like
ansible.builtin.command, and fails as it does when rc is not 0 (`failed_when`
decides otherwise), with the last lines of stderr in msg. A program that
cannot be started is such a failure too, with rc 127 (not found) or 126 (found
but not runnable), as a shell reports them, and msg saying why. Without
read_only the command is not run in check mode, and reports a change
(callers decide with changed_when).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Lines of stderr kept for the failure message.
TAIL_LINES = 20

# The exit codes a shell gives a command it cannot start.
RC_NOT_FOUND = 127
RC_NOT_RUNNABLE = 126


def run_streaming(
    argv: list[str],
    environment: Mapping[str, str],
    on_line: Callable[[str], None],
) -> tuple[int, str, str]:
    """Run argv; call on_line(line) for each stderr line as it arrives.

    Returns (rc, stdout, stderr). stdout is read in its own thread so that
    neither pipe can fill up and stall the command. Raises OSError when the
    program cannot be started.
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **environment},
        text=True,
        errors="replace",
    )
    out, err = process.stdout, process.stderr
    if out is None or err is None:  # not possible with PIPE; for the type checker
        raise RuntimeError("no pipes to the command")
    stdout_parts: list[str] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(out.read()))
    reader.start()
    stderr_lines = []
    for line in err:
        stderr_lines.append(line)
        on_line(line.rstrip("\n"))
    reader.join()
    return process.wait(), "".join(stdout_parts), "".join(stderr_lines)


def run_command(
    argv: list[str],
    environment: Mapping[str, str],
    on_line: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run argv and describe the outcome as ansible.builtin.command does:
    rc, stdout, stderr (and their _lines; without trailing newlines), cmd,
    msg, start, end, delta, failed.

    A program that cannot be started is an outcome too (rc 127 or 126, msg
    says why), not an exception: callers with `failed_when: false` read rc.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def keep(line: str) -> None:
        if line.strip():
            tail.append(line)
        on_line(line)

    start = datetime.datetime.now()
    try:
        rc, stdout, stderr = run_streaming(argv, environment, keep)
        # As ansible.builtin.command returns them: without trailing newlines.
        stdout, stderr = stdout.rstrip("\r\n"), stderr.rstrip("\r\n")
        msg = "" if rc == 0 else f"{argv[0]} exited with {rc}: " + " / ".join(tail)
    except OSError as error:
        rc = RC_NOT_FOUND if isinstance(error, FileNotFoundError) else RC_NOT_RUNNABLE
        stdout = stderr = ""
        msg = f"cannot run {argv[0]}: {error.strerror or error}"
    end = datetime.datetime.now()
    return {
        "rc": rc,
        "cmd": argv,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
        "msg": msg,
        "start": str(start),
        "end": str(end),
        "delta": str(end - start),
        "failed": rc != 0,
    }


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("argv", "environment", "label", "read_only"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            read_only = boolean(self._task.args.get("read_only", False), strict=True)
        except TypeError as error:
            raise AnsibleActionFail(f"read_only must be a boolean: {error}") from error
        # ActionBase.run skips the task in check mode unless this is set.
        self._supports_check_mode = read_only
        result: dict[str, Any] = super().run(tmp, task_vars)
        argv = self._task.args.get("argv")
        environment = self._task.args.get("environment") or {}
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise AnsibleActionFail("argv must be a non-empty list of strings")
        if not isinstance(environment, Mapping):
            raise AnsibleActionFail("environment must be a mapping of variable names to values")
        label = str(self._task.args.get("label") or Path(argv[0]).name)

        def show(line: str) -> None:
            display.display(f"  {label} | {line}")

        outcome = run_command(
            argv,
            {str(k): str(v) for k, v in environment.items()},
            (lambda line: None) if read_only else show,
        )
        result.update(outcome, changed=not read_only)
        return result
