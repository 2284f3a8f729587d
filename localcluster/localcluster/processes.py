"""Long-running component processes that outlive the command that started them.

`localcluster up` returns while the cluster keeps running, so components are
started in their own session (a later SIGTERM to the group reaches their
children) with output in a log file, and recorded in a pid file together with
their start time: a pid that the kernel reused for some other process is never
mistaken for a component, and never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster.layout import RunLayout


class ComponentError(RuntimeError):
    """A component exited or never became ready; carries the tail of its log."""

    def __init__(self, component: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{component} {reason}\n--- last lines of its log ---\n{log_tail}")
        self.component = component


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces; everything after its ")" is well formed.
    fields = stat.rsplit(")", 1)[1].split()
    state, start = fields[0], fields[19]
    return None if state in ("Z", "X") else start


def is_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    return _start_time(pid) is not None


def live_processes(match: Callable[[str, list[bytes]], bool]) -> list[int]:
    """Pids of the live processes whose command name and argv `match` accepts."""
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if match(command, argv) and is_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def shares_mount_namespace(pid: int) -> bool:
    """Whether `pid` sees this machine's file systems as we do.

    A kubelet in a container (a kind node's) has its own mount namespace: its
    /var/lib/kubelet and CDI directories are not ours. False if it has exited.
    """
    try:
        return Path(f"/proc/{pid}/ns/mnt").readlink() == Path("/proc/self/ns/mnt").readlink()
    except OSError:
        return False


@dataclass(frozen=True)
class RunningProcess:
    pid: int
    start_time: str


class Supervisor:
    """Starts, finds and stops the components of one run directory."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def find(self, component: str) -> RunningProcess | None:
        path = self.layout.pid_file(component)
        try:
            pid_text, recorded_start = path.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if _start_time(pid) != recorded_start:
            return None
        return RunningProcess(pid, recorded_start)

    def start(
        self,
        component: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
    ) -> RunningProcess:
        log_path = self.layout.log_file(component)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.layout.pid_file(component).parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        start = _start_time(process.pid)
        if start is None:
            raise ComponentError(component, "exited at once", self.log_tail(component))
        self.layout.pid_file(component).write_text(f"{process.pid} {start}\n")
        return RunningProcess(process.pid, start)

    def wait_ready(
        self,
        component: str,
        ready: Callable[[], bool],
        timeout: float,
        interval: float = 0.25,
    ) -> None:
        """Poll `ready` until it holds; fail early, with the log, if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if self.find(component) is None:
                raise ComponentError(component, "exited", self.log_tail(component))
            try:
                if ready():
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ComponentError(
                    component, f"was not ready after {timeout:.0f}s", self.log_tail(component)
                )
            time.sleep(interval)

    def stop(self, component: str, grace: float = 10.0) -> bool:
        """Stop a component and its process group; True if it was running."""
        running = self.find(component)
        self.layout.pid_file(component).unlink(missing_ok=True)
        if running is None:
            return False
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(running.pid, sig)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if _start_time(running.pid) != running.start_time:
                    _reap(running.pid)
                    return True
                _reap(running.pid)
                time.sleep(0.1)
        return True

    def log_tail(self, component: str, lines: int = 25) -> str:
        try:
            text = self.layout.log_file(component).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (it is, within `up`)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
