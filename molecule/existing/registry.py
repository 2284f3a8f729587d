"""An image registry on loopback, for the `existing` molecule scenario.

With an existing cluster the driver image reaches the nodes through a registry
(`dra_driver_registry`). No registry image can be pulled on the machines this
project is tested on, so this runs distribution's own `registry` program,
built once from the Go module proxy and cached beside the local cluster's
binaries, as a process listening on 127.0.0.1 only. Docker pushes to it and
containerd pulls from it over plain HTTP, which both allow for loopback.

    python registry.py start   # build if needed, start, wait until /v2/ answers
    python registry.py stop    # stop it and delete what was pushed

The last line printed is "registry: started", "registry: already running",
"registry: stopped" or "registry: not running" (the playbooks' changed_when).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from localcluster.binaries import cached_directory, default_cache_dir
from localcluster.layout import RunLayout
from localcluster.processes import ComponentError, Supervisor

MODULE = "github.com/distribution/distribution/v3"
VERSION = "v3.1.2"
COMPONENT = "registry"


def registry_binary() -> Path:
    """The cached registry program, built with `go install` when absent."""

    def build(staging: Path) -> str:
        print(f"registry: building {MODULE}/cmd/registry@{VERSION} (about a minute)", flush=True)
        env = dict(os.environ, GOBIN=str(staging), CGO_ENABLED="0", GOTOOLCHAIN="local")
        subprocess.run(
            ["go", "install", "-trimpath", "-ldflags=-s -w", f"{MODULE}/cmd/registry@{VERSION}"],
            env=env,
            check=True,
        )
        return f"built from {MODULE}/cmd/registry@{VERSION} via the Go module proxy"

    target = default_cache_dir() / "tools" / f"registry-{VERSION}"
    return cached_directory(target, build) / "registry"


def _config(layout: RunLayout, address: str) -> Path:
    path = layout.root / "config.yml"
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {layout.root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    return path


def _answers(address: str) -> bool:
    # Loopback only: the address is checked in main().
    with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
        return bool(response.status == 200)


def start(layout: RunLayout, address: str) -> str:
    supervisor = Supervisor(layout)
    if supervisor.find(COMPONENT) is not None:
        return "registry: already running"
    binary = registry_binary()
    layout.root.mkdir(parents=True, exist_ok=True)
    supervisor.start(COMPONENT, [str(binary), "serve", str(_config(layout, address))])
    try:
        supervisor.wait_ready(COMPONENT, lambda: _answers(address), timeout=30)
    except ComponentError:
        supervisor.stop(COMPONENT)
        raise
    return "registry: started"


def stop(layout: RunLayout) -> str:
    was_running = Supervisor(layout).stop(COMPONENT)
    shutil.rmtree(layout.root, ignore_errors=True)
    return "registry: stopped" if was_running else "registry: not running"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--address", default="127.0.0.1:5000", help="loopback host:port")
    args = parser.parse_args()
    if not args.address.startswith("127."):
        parser.error(f"--address {args.address}: the registry listens on loopback only")
    layout = RunLayout(args.state_dir.resolve())
    try:
        print(start(layout, args.address) if args.action == "start" else stop(layout))
    except (ComponentError, subprocess.CalledProcessError) as error:
        print(f"registry: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
