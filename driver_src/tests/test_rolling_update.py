"""Two driver processes on one node, as a rolling update with maxSurge 1 runs them.

Each instance is started with its own pod UID on the same plugin, registry,
CDI and file directories. Both must serve at once, each must create and
remove only its own sockets, and a stale socket that an earlier container of
the same pod left behind is replaced. No API server is needed for this (its
address refuses connections); the hand-over of prepared claims between the
two processes is tested against the real API server in
test_cluster_rolling_update.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dra_file_driver import config

from .driver_testkit import (
    NODE,
    directory_flags,
    free_port,
    new_uid,
    unreachable_kubeconfig,
    wait_for,
)
from .kubelet_client import Claim, KubeletClient


@dataclass
class Instance:
    """One driver process and the socket paths its pod UID gives it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    registration_socket: Path
    dra_socket: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


StartInstance = Callable[[str], Instance]


@pytest.fixture
def start_instance(base_dir: Path) -> Iterator[StartInstance]:
    kubeconfig = unreachable_kubeconfig(base_dir / "kubeconfig", free_port())
    instances: list[Instance] = []

    def start(pod_uid: str) -> Instance:
        flags = ["--node-name", NODE, *directory_flags(base_dir)]
        cfg = config.parse([*flags, "--pod-uid", pod_uid], {})
        log_path = base_dir / f"driver-{len(instances)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "dra_file_driver", *flags, "--kubeconfig", str(kubeconfig)],
                env={"PATH": os.environ["PATH"], "POD_UID": pod_uid},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        instance = Instance(process, log_path, cfg.registration_socket, cfg.dra_socket)
        instances.append(instance)

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"driver exited with {process.returncode}:\n{instance.log()}")
            # Not the socket file: a stale one may be there before the start.
            return "driver started" in instance.log()

        wait_for(started, 60, f"driver instance {pod_uid} to start")
        return instance

    yield start
    for instance in instances:
        if instance.process.poll() is None:
            instance.process.kill()
        instance.process.wait()


def leave_stale_socket(path: Path) -> None:
    """A socket file with no listener, as a killed process leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def assert_serves(instance: Instance) -> None:
    """Register like the kubelet and call both DRA methods through the instance's sockets."""
    kubelet = KubeletClient(instance.registration_socket)
    try:
        assert kubelet.register() == "v1.DRAPlugin"
        assert kubelet.info is not None
        assert kubelet.info.endpoint == str(instance.dra_socket)
        claim = Claim("ns", "claim", new_uid())
        assert kubelet.prepare([claim])[claim.uid].error.startswith("cannot read claim ns/claim:")
        assert kubelet.unprepare([claim]) == {claim.uid: ""}
    finally:
        kubelet.close()


def socket_names(*directories: Path) -> set[str]:
    return {p.name for d in directories for p in d.iterdir() if p.is_socket()}


def test_two_instances_serve_side_by_side_and_each_removes_only_its_own_sockets(
    base_dir: Path, start_instance: StartInstance
) -> None:
    old_uid, new_uid_, foreign_uid = new_uid(), new_uid(), new_uid()
    registry, plugin = base_dir / "reg", base_dir / "plugin"
    flags = ["--node-name", NODE, *directory_flags(base_dir)]
    own_stale = config.parse([*flags, "--pod-uid", old_uid], {})
    foreign = config.parse([*flags, "--pod-uid", foreign_uid], {})
    # A crashed container of the old pod left its sockets; a third instance's
    # sockets belong to someone else and must survive everything below.
    for path in (
        own_stale.registration_socket,
        own_stale.dra_socket,
        foreign.registration_socket,
        foreign.dra_socket,
    ):
        leave_stale_socket(path)
    foreign_sockets = {foreign.registration_socket.name, foreign.dra_socket.name}

    old = start_instance(old_uid)
    assert "removing stale socket" in old.log()
    new = start_instance(new_uid_)
    assert old.registration_socket != new.registration_socket
    assert old.dra_socket != new.dra_socket
    assert socket_names(registry, plugin) == {
        old.registration_socket.name,
        old.dra_socket.name,
        new.registration_socket.name,
        new.dra_socket.name,
        *foreign_sockets,
    }
    assert_serves(old)
    assert_serves(new)

    # The old pod goes once the new one is ready: only its sockets go with it.
    assert old.stop() == 0
    assert socket_names(registry, plugin) == {
        new.registration_socket.name,
        new.dra_socket.name,
        *foreign_sockets,
    }
    assert_serves(new)

    assert new.stop() == 0
    assert socket_names(registry, plugin) == foreign_sockets
