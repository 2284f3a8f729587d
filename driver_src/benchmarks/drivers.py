"""The driver under test: this project's driver, or the Go dra-example-driver.

The benchmark measures either one the same way (same claims count, same
kubelet client, same concurrency levels, same start-up and memory figures).
What differs between them is gathered here: how a claim is allocated so that
the driver accepts it, and how the process is started.

The Go driver is the kubelet plugin of kubernetes-sigs/dra-example-driver
(`cmd/dra-example-kubeletplugin`, built by `build_go_driver.sh`) with its gpu
profile: driver gpu.example.com, one pool named after the node, devices
gpu-0 .. gpu-<N-1> in one ResourceSlice.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests import cluster_kit

STOP_SECONDS = 30.0


class RunningDriver(Protocol):
    """A driver process as the benchmark uses it (cluster_kit.DriverProcess is one)."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def registration_socket(self) -> Path: ...

    def stop(self) -> int: ...


class DriverUnderTest(Protocol):
    @property
    def driver_name(self) -> str: ...

    @property
    def request(self) -> str:
        """The claim's request name (any name the claim's spec declares will do)."""
        ...

    def describe(self) -> str:
        """One line saying which code runs: a source tree and its commit, or a binary."""
        ...

    def device(self, claim_index: int) -> str:
        """The device allocated to the claim_index-th claim."""
        ...

    def start_plain(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        """Start the driver as the start-up figure measures it."""
        ...

    def start_loaded(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        """Start the driver configured for the latency run (devices shared by the claims)."""
        ...


def stop_driver(driver: RunningDriver) -> None:
    """Stop the driver; kill it if SIGTERM does not end it in time, so that none survives."""
    try:
        driver.stop()
    except subprocess.TimeoutExpired:
        driver.process.kill()
        driver.process.wait()


@dataclass(frozen=True)
class FileDriver:
    """This project's driver, run by the benchmark's interpreter (PYTHONPATH picks the code)."""

    file_count: int
    driver_name: str = cluster_kit.DRIVER
    request: str = "files"

    def describe(self) -> str:
        return f"dra_file_driver, {python_driver_code()}"

    def device(self, claim_index: int) -> str:
        return f"file{1 + claim_index % self.file_count}"

    def start_plain(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        return cluster_kit.start_driver_process(base, kubeconfig, node)

    def start_loaded(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        return cluster_kit.start_driver_process(
            base,
            kubeconfig,
            node,
            "--shared",
            "--file-count",
            str(self.file_count),
            "--log-level",
            "warning",
        )


@dataclass(frozen=True)
class GoExampleDriver:
    """dra-example-driver's kubelet plugin, gpu profile, its devices shareable.

    Its devices are marked allowMultipleAllocations (as ours are with
    --shared), so one device may be in several claims. Its client-side rate
    limit (5 QPS, burst 10 by default) is switched off (a negative QPS):
    ours has none, and at 5 QPS the benchmark would measure the limiter.
    """

    binary: Path
    device_count: int
    driver_name: str = "gpu.example.com"
    request: str = "gpu"

    def describe(self) -> str:
        digest = hashlib.sha256(self.binary.read_bytes()).hexdigest()
        return f"dra-example-kubeletplugin (Go), {self.binary} sha256 {digest[:12]}"

    def device(self, claim_index: int) -> str:
        return f"gpu-{claim_index % self.device_count}"

    def start_plain(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        return self.start_loaded(base, kubeconfig, node)

    def start_loaded(self, base: Path, kubeconfig: Path, node: str) -> RunningDriver:
        # The kubelet owns the registration directory; the plugin expects it to exist.
        (base / "reg").mkdir(exist_ok=True)
        command = [
            str(self.binary),
            "--node-name",
            node,
            "--kubeconfig",
            str(kubeconfig),
            "--kube-api-qps=-1",
            "--cdi-root",
            str(base / "cdi"),
            "--kubelet-registrar-directory-path",
            str(base / "reg"),
            "--kubelet-plugins-directory-path",
            str(base / "plugins"),
            "--device-profile",
            "gpu",
            "--num-devices",
            str(self.device_count),
            "--gpu-allow-multiple-allocations",
        ]
        log_path = base / "driver.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=base, env={}, stdout=subprocess.DEVNULL, stderr=log
            )
        return GoPluginProcess(process, base, log_path, self.driver_name)


@dataclass
class GoPluginProcess:
    process: subprocess.Popen[bytes]
    base: Path
    log_path: Path
    driver_name: str

    @property
    def registration_socket(self) -> Path:
        # kubeletplugin.Start's name without RollingUpdate: <driver name>-reg.sock.
        return self.base / "reg" / f"{self.driver_name}-reg.sock"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_SECONDS)


def python_driver_code() -> str:
    """Where the driver process imports dra_file_driver from, and that tree's git commit."""
    located = subprocess.run(
        [sys.executable, "-c", "import dra_file_driver; print(dra_file_driver.__file__)"],
        env=cluster_kit.driver_environment(),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    package = Path(located.stdout.strip()).parent
    return f"{package} ({git_commit(package)})"


def git_commit(path: Path) -> str:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
        )

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return "not a git checkout"
    changed = git("status", "--porcelain", "--", ".").stdout.strip()
    return f"git {head.stdout.strip()}" + (", with uncommitted changes" if changed else "")
