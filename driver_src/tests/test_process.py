"""The driver as a process: configuration errors, an absent API server, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .driver_testkit import NODE, free_port, new_uid, unreachable_kubeconfig, wait_for
from .kubelet_client import Claim, KubeletClient

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(base_dir: Path) -> Iterator[Spawn]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        stderr = (base_dir / f"stderr-{len(processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "dra_file_driver", *args],
            env={"PATH": os.environ["PATH"], **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def stderr_of(base_dir: Path, index: int = 0) -> str:
    return (base_dir / f"stderr-{index}.log").read_text()


@pytest.mark.parametrize(
    ("args", "env", "flag"),
    [
        ([], {}, "--node-name (NODE_NAME): is required"),
        (["--file-count", "zero"], {"NODE_NAME": "n"}, "--file-count (DRA_FILE_COUNT)"),
        ([], {"NODE_NAME": "n", "KUBECONFIG": "/nonexistent"}, "--kubeconfig (KUBECONFIG)"),
        ([], {"NODE_NAME": "n"}, "--kubeconfig (KUBECONFIG)"),  # no in-cluster config here
    ],
)
def test_bad_configuration_exits_at_once_naming_the_flag(
    spawn: Spawn, base_dir: Path, args: list[str], env: dict[str, str], flag: str
) -> None:
    process = spawn(*args, env=env)
    assert process.wait(timeout=60) == 2
    assert flag in stderr_of(base_dir)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serves_without_api_server_and_stops_cleanly_on_signal(
    spawn: Spawn, base_dir: Path, stop_signal: signal.Signals
) -> None:
    kubeconfig = unreachable_kubeconfig(base_dir / "kubeconfig", free_port())
    registration = base_dir / "reg" / "file.dra.example.com-reg.sock"
    dra_socket = base_dir / "plugin" / "dra.sock"
    process = spawn(
        "--log-format",
        "json",
        env={
            "NODE_NAME": NODE,
            "KUBECONFIG": str(kubeconfig),
            "DRA_REGISTRY_DIR": str(base_dir / "reg"),
            "DRA_PLUGIN_DIR": str(base_dir / "plugin"),
            "DRA_CDI_DIR": str(base_dir / "cdi"),
            "DRA_FILE_DIR": str(base_dir / "files"),
        },
    )
    wait_for(registration.exists, 60, "the registration socket")
    kubelet = KubeletClient(registration)
    try:
        assert kubelet.register() == "v1.DRAPlugin"
        claim = Claim("ns", "claim", new_uid())
        error = kubelet.prepare([claim])[claim.uid].error
        assert error.startswith("cannot read claim ns/claim:")
        assert kubelet.unprepare([claim]) == {claim.uid: ""}
    finally:
        kubelet.close()

    def retried_publishing() -> bool:
        return "publishing ResourceSlices failed; retrying" in stderr_of(base_dir)

    wait_for(retried_publishing, 60, "a publishing retry in the log")
    assert process.poll() is None  # an absent API server is no reason to exit
    assert (base_dir / "files" / "file1").read_bytes() == b""

    process.send_signal(stop_signal)
    assert process.wait(timeout=60) == 0
    assert not registration.exists()
    assert not dra_socket.exists()
    records = [json.loads(line) for line in stderr_of(base_dir).splitlines()]
    assert {"time", "level", "logger", "msg"} <= records[0].keys()
    messages = [r["msg"] for r in records]
    assert "driver started" in messages
    assert messages[-1] == "driver stopped"
