"""`kind_cluster probe`: can podman run kind's node containers here?

The probe decides, before anything is built, whether `auto` may choose kind on
podman. Where podman is installed it is run for real (a privileged container
from a throw-away busybox root); its failure modes are shown with a stand-in
`podman` script on PATH (a fake, named so) and a missing busybox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster.kind_cluster import podman_problem


def _probe_cli(env: dict[str, str] | None = None) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "localcluster.kind_cluster", "probe"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    answer = json.loads(result.stdout)
    assert isinstance(answer, dict)
    return answer


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_here_runs_a_privileged_container_and_leaves_nothing() -> None:
    before = subprocess.run(
        ["podman", "ps", "--all", "--quiet"], capture_output=True, text=True, check=True
    ).stdout
    assert _probe_cli() == {"runtime": "podman", "ok": True, "problem": ""}
    after = subprocess.run(
        ["podman", "ps", "--all", "--quiet"], capture_output=True, text=True, check=True
    ).stdout
    assert after == before


def test_without_podman_the_problem_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    answer = _probe_cli(env)
    assert answer["ok"] is False
    assert "podman is not installed" in str(answer["problem"])


def test_a_failing_podman_run_is_reported_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_podman = tmp_path / "podman"  # a fake: stands for a podman that cannot start it
    fake_podman.write_text(
        "#!/bin/sh\necho 'Error: runc: error setting rlimit type 7: operation not permitted' >&2\n"
        "exit 126\n"
    )
    fake_podman.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    problem = podman_problem()
    assert problem is not None
    assert "`podman run --privileged` fails" in problem
    assert "rlimit type 7" in problem


def test_the_probe_uses_podman_settings_for_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake podman that records what it was given: the containers.conf
    # without default ulimits, a privileged run, a root with busybox in it.
    record = tmp_path / "record"
    fake_podman = tmp_path / "podman"
    fake_podman.write_text(
        f'#!/bin/sh\n{{ echo "$@"; cat "$CONTAINERS_CONF"; ls "$7/bin"; }} > {record}\n'
    )
    fake_podman.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert podman_problem() is None
    arguments, *rest = record.read_text().splitlines()
    assert arguments.startswith("run --rm --privileged --network none --rootfs ")
    assert arguments.endswith(" /bin/busybox true")
    assert rest == ["[containers]", "default_ulimits = []", "busybox"]


def test_a_missing_busybox_is_named(tmp_path: Path) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the probe stops before it needs busybox")
    problem = podman_problem(busybox=tmp_path / "busybox")
    assert problem is not None
    assert "busybox" in problem
