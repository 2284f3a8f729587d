"""Benchmark: prepare/unprepare latency, start-up time and memory of the driver.

Runs the driver as a process against a real API server, the way the kubelet
would use it, and prints figures; it asserts nothing about speed (that is
what the printed numbers are for) and is not collected by pytest.

    cd driver_src && python -m benchmarks.prepare_latency [--kubeconfig PATH] [--go-driver PATH]

Without --kubeconfig it starts (or reuses) the localcluster control plane and
stops it afterwards if it started it. What is measured:

* latency of NodePrepareResources and NodeUnprepareResources, one claim per
  call as the kubelet sends them for single-claim pods, p50/p99 at each
  concurrency level over --claims claims (each prepare GETs its claim from
  the API server and writes checkpoint, CDI spec and device file with fsync);
* time from process start to a registration socket that answers GetInfo
  (median of --startup-runs starts of the real driver process);
* resident memory of the driver (VmRSS) when idle, IDLE_SECONDS after it
  answered GetInfo, and after the run (with the peak, VmHWM).

The driver is started with the interpreter running the benchmark; set
PYTHONPATH to another checkout's driver_src to measure that code instead
(e.g. the code before a change). With --go-driver the same figures are taken
of kubernetes-sigs/dra-example-driver's kubelet plugin (a binary built by
build_go_driver.sh), for a side-by-side comparison; see drivers.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import grpc
from kubernetes import client, config

from localcluster.cluster import LocalCluster
from localcluster.layout import DEFAULT_RUN_DIR

# The cluster helpers live with the tests; driver_src must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kubelet_client import Claim, KubeletClient

from tests import cluster_kit

from .drivers import DriverUnderTest, FileDriver, GoExampleDriver, RunningDriver, stop_driver

CONCURRENCY = (1, 8, 64)
IDLE_SECONDS = 3.0
START_TIMEOUT = 60.0
PODS = 64  # claims are reserved for these pods, round robin


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def timed_calls(calls: Sequence[Callable[[], None]], concurrency: int) -> tuple[list[float], float]:
    """Run calls with concurrency workers; return per-call latencies and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(call: Callable[[], None]) -> None:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        with lock:
            latencies.append(elapsed)

    wall_start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        list(pool.map(run, calls))
    finally:
        # On a failure or a signal, drop the calls not yet started (the
        # default would make them all first) and let the driver be stopped.
        pool.shutdown(wait=True, cancel_futures=True)
    return latencies, time.perf_counter() - wall_start


@contextlib.contextmanager
def api_server(kubeconfig: Path | None) -> Iterator[Path]:
    if kubeconfig is not None:
        yield kubeconfig
        return
    # The run directory the localcluster CLI uses: a running demo cluster
    # is reused (and left running), otherwise one is started and stopped.
    cluster = LocalCluster(run_dir=Path(os.environ.get("LOCALCLUSTER_RUN_DIR", DEFAULT_RUN_DIR)))
    started = cluster.up(with_node=False).started
    try:
        yield cluster.kubeconfig
    finally:
        if started:
            cluster.down()


def make_claims(
    api: client.ApiClient, ns: str, node: str, count: int, driver: DriverUnderTest
) -> list[Claim]:
    """Claims allocated as the scheduler would for driver: its device i, pool node."""
    pods = [cluster_kit.pending_pod(api, ns, f"bench-pod-{i}") for i in range(PODS)]

    def make(i: int) -> Claim:
        claim = cluster_kit.create_claim(
            api,
            ns,
            name=f"bench-claim-{i}",
            requests=(driver.request,),
            device_class=driver.driver_name,
        )
        allocated = cluster_kit.allocate(
            api,
            claim,
            [cluster_kit.result(driver.device(i), node, driver.request, driver.driver_name)],
            reserved_for=[pods[i % PODS]],
        )
        return cluster_kit.as_claim(allocated)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(make, range(count)))


def wait_answering(driver: RunningDriver) -> None:
    """Return once the registration socket answers GetInfo."""
    registration = driver.registration_socket
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if driver.process.poll() is not None:
            raise RuntimeError(
                f"driver exited with {driver.process.returncode}:\n{log_tail(driver.log_path)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no GetInfo answer on {registration} within {START_TIMEOUT:.0f} s:\n"
                f"{log_tail(driver.log_path)}"
            )
        if registration.exists():
            kubelet = KubeletClient(registration)
            try:
                kubelet.get_info()
                return
            except grpc.RpcError:
                pass
            finally:
                kubelet.close()
        time.sleep(0.002)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def measure_startup(
    driver: DriverUnderTest, base: Path, kubeconfig: Path, node: str, runs: int
) -> list[float]:
    times = []
    for run in range(runs):
        run_dir = base / f"startup-{run}"
        start = time.perf_counter()
        proc = driver.start_plain(run_dir_ready(run_dir), kubeconfig, node)
        try:
            wait_answering(proc)
            times.append(time.perf_counter() - start)
        finally:
            stop_driver(proc)
    return times


def run_dir_ready(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def report(name: str, concurrency: int, latencies: list[float], wall: float) -> dict[str, Any]:
    row = {
        "op": name,
        "concurrency": concurrency,
        "calls": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "per_s": len(latencies) / wall,
    }
    print(
        f"{name:<10} c={concurrency:<3} n={row['calls']:<5} p50={row['p50_ms']:8.2f} ms  "
        f"p99={row['p99_ms']:8.2f} ms  mean={row['mean_ms']:8.2f} ms  "
        f"throughput={row['per_s']:8.1f}/s"
    )
    return row


def run_levels(kubelet: KubeletClient, claims: Sequence[Claim]) -> list[dict[str, Any]]:
    rows = []
    for concurrency in CONCURRENCY:
        prepares = [lambda c=c: check(kubelet.prepare([c])) for c in claims]
        rows.append(report("prepare", concurrency, *timed_calls(prepares, concurrency)))
        unprepares = [lambda c=c: check(kubelet.unprepare([c])) for c in claims]
        rows.append(report("unprepare", concurrency, *timed_calls(unprepares, concurrency)))
    return rows


def print_ratios(rows: Sequence[dict[str, Any]]) -> None:
    base = {r["op"]: r for r in rows if r["concurrency"] == 1}
    for r in rows:
        if r["concurrency"] != 1:
            one = base[r["op"]]
            print(
                f"{r['op']:<10} c={r['concurrency']:<3} p99 x{r['p99_ms'] / one['p99_ms']:.1f} "
                f"of c=1, throughput x{r['per_s'] / one['per_s']:.1f} of c=1"
            )


def print_markdown(
    rows: Sequence[dict[str, Any]],
    startup_ms: Sequence[float],
    idle: Mapping[str, int],
    after: Mapping[str, int],
) -> None:
    """The figures once more as a Markdown table, for reports."""
    print("\n| op | c | p50 ms | p99 ms | per s |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['op']} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['per_s']:.0f} |"
        )
    print(
        f"\nstart -> GetInfo median {statistics.median(startup_ms):.0f} ms "
        f"({len(startup_ms)} starts); RSS idle {idle['VmRSS'] / 1024:.1f} MiB, "
        f"after the run {after['VmRSS'] / 1024:.1f} MiB (peak {after['VmHWM'] / 1024:.1f} MiB)"
    )


def benchmark(
    driver: DriverUnderTest, kubeconfig: Path, base: Path, args: argparse.Namespace
) -> None:
    api = config.new_client_from_config(str(kubeconfig))
    version = client.VersionApi(api).get_code().git_version
    print(f"driver under test: {driver.describe()}")
    print(
        f"API server {version}; {args.claims} claims, {args.file_count} shared devices, "
        "one claim per call"
    )
    with cluster_kit.fake_node(api) as node, cluster_kit.namespace(api) as ns:
        setup_start = time.perf_counter()
        claims = make_claims(api, ns, node, args.claims, driver)
        print(
            f"created {len(claims)} allocated claims in {time.perf_counter() - setup_start:.1f} s"
        )

        startup = [
            s * 1000 for s in measure_startup(driver, base, kubeconfig, node, args.startup_runs)
        ]
        print(
            f"start-up to GetInfo answered: median {statistics.median(startup):.0f} ms "
            f"(min {min(startup):.0f}, max {max(startup):.0f}, {len(startup)} runs)"
        )

        proc = driver.start_loaded(run_dir_ready(base / "bench"), kubeconfig, node)
        kubelet = KubeletClient(proc.registration_socket)
        try:
            wait_answering(proc)
            time.sleep(IDLE_SECONDS)
            idle = memory_kib(proc.process.pid)
            kubelet.register()
            rows = run_levels(kubelet, claims)
            memory = memory_kib(proc.process.pid)
        finally:
            kubelet.close()
            stop_driver(proc)
        print_ratios(rows)
        print(
            f"driver memory: RSS idle ({IDLE_SECONDS:.0f} s after start) "
            f"{idle['VmRSS'] / 1024:.1f} MiB; after {len(claims) * len(CONCURRENCY)} prepares "
            f"and unprepares {memory['VmRSS'] / 1024:.1f} MiB, "
            f"peak {memory['VmHWM'] / 1024:.1f} MiB"
        )
        print_markdown(rows, startup, idle, memory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--kubeconfig", type=Path, help="admin kubeconfig of a running cluster")
    parser.add_argument("--claims", type=int, default=1000, help="claims per level")
    parser.add_argument("--file-count", type=int, default=8, help="shared devices on the node")
    parser.add_argument("--startup-runs", type=int, default=10)
    parser.add_argument(
        "--go-driver",
        type=Path,
        metavar="PATH",
        help="measure this dra-example-kubeletplugin binary (built by build_go_driver.sh) "
        "instead of this project's driver",
    )
    args = parser.parse_args(argv)
    driver = under_test(args)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    base = Path(tempfile.mkdtemp(prefix="dra-bench-", dir="/tmp"))
    try:
        with api_server(args.kubeconfig) as kubeconfig:
            benchmark(driver, kubeconfig, base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def under_test(args: argparse.Namespace) -> DriverUnderTest:
    if args.go_driver is None:
        return FileDriver(file_count=args.file_count)
    if not os.access(args.go_driver, os.X_OK):
        raise SystemExit(f"--go-driver {args.go_driver}: not an executable file")
    return GoExampleDriver(binary=args.go_driver.resolve(), device_count=args.file_count)


def exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    """Unwind on SIGTERM as on Ctrl-C, so that the driver and the control plane are stopped.

    Python's default for SIGTERM ends the process at once, leaving the driver
    process (and a control plane it started) running. Later SIGTERMs are
    ignored so that they cannot cut the clean-up short.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def check(answer: Mapping[str, object]) -> None:
    """Fail the benchmark on any per-claim error: a failed call is no latency sample."""
    for uid, outcome in answer.items():
        error = outcome if isinstance(outcome, str) else getattr(outcome, "error", "")
        if error:
            raise RuntimeError(f"claim {uid} failed: {error}")


if __name__ == "__main__":
    raise SystemExit(main())
