"""The CLI starts without the heavy libraries only `up` needs.

Every `site.yml` run calls `localcluster status` and `import-image`; the
Kubernetes client (about 0.5 s to import) and cryptography (the PKI) are
needed only when `up` starts components, so the other commands must not load
them. Runs the real CLI in a fresh interpreter, where nothing else has
imported them yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("kubernetes", "cryptography")

# Runs the CLI's main() on its arguments, then reports on stderr which of
# HEAVY it loaded.
PROBE = f"""
import json, sys
from localcluster import cli
code = cli.main(sys.argv[1:])
loaded = sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""


def _run(*argv: str) -> tuple[dict[str, object], str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout


def test_status_loads_neither_the_kubernetes_client_nor_cryptography(tmp_path: Path) -> None:
    probe, stdout = _run("--run-dir", str(tmp_path / "run"), "status", "--json")
    # A new run directory: no cluster runs there, and none is started.
    assert probe == {"code": 0, "loaded": []}
    assert json.loads(stdout)["running"] is False


def test_the_probe_sees_a_heavy_import() -> None:
    # The same probe around a command that did import one: it must report it,
    # or the test above could not fail.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kubernetes\n" + PROBE,
            "--run-dir",
            "/nonexistent/run",
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(result.stderr.strip().splitlines()[-1])
    assert probe["loaded"] == ["kubernetes"]
