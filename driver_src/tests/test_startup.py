"""What the driver loads before its sockets answer.

The kubelet gives GetInfo one second, and a restarted driver should be back
at once: everything slow to import waits until the sockets are open. The
start-up time itself is measured by the benchmark, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from dra_file_driver.metrics import Metrics

from .driver_testkit import free_port

# Loaded after the sockets answer (metrics.load(), kube.Api.connect()), never
# by the kubernetes client, which the driver does not use at all.
LOADED_LATER = ("prometheus_client", "urllib3", "yaml", "http.server", "kubernetes")


def test_the_driver_imports_nothing_slow_before_serving() -> None:
    # A fresh interpreter: this test process has loaded all of them already.
    code = (
        "import json, sys\n"
        "import dra_file_driver.app\n"
        f"print(json.dumps([m for m in {LOADED_LATER!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_metrics_are_served_with_the_prepared_count() -> None:
    metrics = Metrics()
    metrics.track_prepared_claims(lambda: 3)  # before the library is loaded
    metrics.requests.labels("NodePrepareResources", "v1").inc()
    port = free_port()
    stop = metrics.serve(port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        stop()
    assert "dra_file_driver_prepared_claims 3.0" in text
    assert 'dra_file_driver_requests_total{api="v1",method="NodePrepareResources"} 1.0' in text
