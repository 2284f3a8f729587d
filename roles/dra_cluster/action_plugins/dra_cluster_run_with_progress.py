"""Action dra_cluster_run_with_progress: run a long command on the controller and
show its progress while it runs.

ansible.builtin.command shows a command's output only when it has ended: a
first run that builds Kubernetes or kind's node image (15 minutes and more)
would print nothing until then, and its progress only on failure. This action
runs the command on the controller (where those builds happen: the tasks run
on localhost) and passes every line the command writes to stderr on to the
screen as it comes, prefixed with the task's label. stdout (the command's
JSON answer) is returned as ansible.builtin.command returns it.

Arguments:
  argv         the command, a list of strings (no shell)
  environment  variables added to the controller's environment (dict)
  label        prefix of the progress lines (default: the program's name)

Returns rc, stdout, stderr (and their _lines), cmd, start/end/delta like
ansible.builtin.command; fails when rc is not 0, with the last lines of
stderr in msg. Not run in check mode (it is for commands that change things).
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
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Lines of stderr kept for the failure message.
TAIL_LINES = 20


def run_streaming(
    argv: list[str],
    environment: Mapping[str, str],
    on_line: Callable[[str], None],
) -> tuple[int, str, str]:
    """Run argv; call on_line(line) for each stderr line as it arrives.

    Returns (rc, stdout, stderr). stdout is read in its own thread so that
    neither pipe can fill up and stall the command.
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


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = False
    _VALID_ARGS = frozenset(("argv", "environment", "label"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        argv = self._task.args.get("argv")
        environment = self._task.args.get("environment") or {}
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise AnsibleActionFail("argv must be a non-empty list of strings")
        if not isinstance(environment, Mapping):
            raise AnsibleActionFail("environment must be a mapping of variable names to values")
        label = str(self._task.args.get("label") or Path(argv[0]).name)
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def show(line: str) -> None:
            tail.append(line)
            display.display(f"  {label} | {line}")

        start = datetime.datetime.now()
        try:
            rc, stdout, stderr = run_streaming(
                argv, {str(k): str(v) for k, v in environment.items()}, show
            )
        except OSError as error:
            raise AnsibleActionFail(f"cannot run {argv[0]}: {error}") from error
        end = datetime.datetime.now()
        result.update(
            rc=rc,
            cmd=argv,
            stdout=stdout,
            stderr=stderr,
            stdout_lines=stdout.splitlines(),
            stderr_lines=stderr.splitlines(),
            start=str(start),
            end=str(end),
            delta=str(end - start),
            changed=True,
        )
        if rc != 0:
            result["failed"] = True
            result["msg"] = f"{argv[0]} exited with {rc}: " + " / ".join(tail)
        return result
