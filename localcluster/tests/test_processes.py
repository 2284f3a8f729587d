"""Finding processes by what they run, as `up` and `down` do on the host."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from localcluster.processes import live_processes, shares_mount_namespace


def test_a_process_is_found_by_its_command_name_and_its_argv(
    start_named_process: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    name = f"lc-{uuid.uuid4().hex[:8]}"
    child = start_named_process(name)
    assert live_processes(lambda command, _: command == name) == [child.pid]
    assert live_processes(lambda _, argv: argv[0].endswith(f"/{name}".encode())) == [child.pid]
    assert os.getpid() not in live_processes(lambda command, _: command == name)


def test_an_exited_process_not_yet_reaped_is_not_live(
    start_named_process: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    name = f"lc-{uuid.uuid4().hex[:8]}"
    child = start_named_process(name)
    os.kill(child.pid, signal.SIGKILL)
    # Until it is reaped, the child is a zombie: still in /proc under its name,
    # but it has exited and must not count as running.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the process did not become a zombie"
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == name
    assert live_processes(lambda command, _: command == name) == []


def test_a_process_in_its_own_mount_namespace_does_not_share_ours(tmp_path: Path) -> None:
    # What a kind node's kubelet looks like from the host: alive, but with
    # mounts of its own, so it cannot be the host's kubelet.
    assert shares_mount_namespace(os.getpid())
    child = subprocess.Popen(["unshare", "--mount", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/ns/mnt").readlink() == Path("/proc/self/ns/mnt").readlink():
            assert time.monotonic() < deadline, "unshare did not enter a new mount namespace"
            time.sleep(0.01)
        assert not shares_mount_namespace(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not shares_mount_namespace(child.pid)  # gone
