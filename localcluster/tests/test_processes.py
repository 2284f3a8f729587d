"""Finding processes by what they run, as `up` and `down` do on the host."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.processes import live_processes


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A running `sleep` under a command name no other process has (a copy of the binary)."""
    name = f"lc-{uuid.uuid4().hex[:8]}"
    binary = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    child = subprocess.Popen([str(binary), "60"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/comm").read_text().strip() != name:
        assert time.monotonic() < deadline, "the sleeper did not start"
        time.sleep(0.01)
    try:
        yield child, name
    finally:
        child.kill()
        child.wait()


def test_a_process_is_found_by_its_command_name_and_its_argv(
    sleeper: tuple[subprocess.Popen[bytes], str],
) -> None:
    child, name = sleeper
    assert live_processes(lambda command, _: command == name) == [child.pid]
    assert live_processes(lambda _, argv: argv[0].endswith(name.encode())) == [child.pid]
    assert os.getpid() not in live_processes(lambda command, _: command == name)


def test_an_exited_process_not_yet_reaped_is_not_live(
    sleeper: tuple[subprocess.Popen[bytes], str],
) -> None:
    child, name = sleeper
    os.kill(child.pid, signal.SIGKILL)
    # Until wait() reaps it, the child is a zombie: still in /proc under its
    # name, but it has exited and must not count as running.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the sleeper did not become a zombie"
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == name
    assert live_processes(lambda command, _: command == name) == []
