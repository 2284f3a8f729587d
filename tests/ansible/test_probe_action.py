"""dra_cluster_run_with_progress with read_only: a probe on the controller without a module run.

resolve.yml's probes (`kind version`, `docker version`, podman, `kind get
nodes`, `localcluster status`) and kind.yml's read-only commands use it
instead of ansible.builtin.command, whose module process costs seconds a task
here. They rely on it behaving as ansible.builtin.command: rc, stdout, stderr
and msg come back, a failing command fails the task (`failed_when` decides
otherwise), a missing program is an rc and a msg rather than a crash; and,
being read-only, it runs in check mode too and never reports a change. Each
case runs the real ansible-playbook (tests/ansible/probe.yml).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Writes to both streams, shows an environment variable the task sets, exits
# with the code given.
SCRIPT = """
import os, sys
print("out " + os.environ["PROBE_GREETING"])
print("first problem", file=sys.stderr)
print("", file=sys.stderr)
print("second problem", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def _probe(run_playbook: Any, tmp_path: Path, argv: list[str], *args: str) -> dict[str, Any]:
    """Run the probe playbook; the probe task's result (as registered) and the run."""
    report = tmp_path / "report.json"
    run = run_playbook(
        "tests/ansible/probe.yml",
        "--extra-vars",
        json.dumps({"probe_argv": argv, "probe_report": str(report)}),
        *args,
    )
    assert run.returncode == 0, run.output
    registered: dict[str, Any] = json.loads(report.read_text())
    return {"result": registered, "run": run}


def test_stdout_stderr_and_rc_come_back_and_nothing_is_changed(
    run_playbook: Any, tmp_path: Path
) -> None:
    probed = _probe(run_playbook, tmp_path, [sys.executable, "-c", SCRIPT, "0"])
    result = probed["result"]
    assert result["rc"] == 0
    # Without trailing newlines, as ansible.builtin.command returns them.
    assert result["stdout"] == "out hello"
    assert result["stderr"] == "first problem\n\nsecond problem"
    assert result["stdout_lines"] == ["out hello"]
    assert result["stderr_lines"] == ["first problem", "", "second problem"]
    assert result["cmd"] == [sys.executable, "-c", SCRIPT, "0"]
    assert result["msg"] == ""
    assert result["failed"] is False
    assert result["changed"] is False
    # The report task is the only change.
    assert probed["run"].recap["changed"] == 1


def test_check_mode_still_runs_the_probe(run_playbook: Any, tmp_path: Path) -> None:
    probed = _probe(run_playbook, tmp_path, [sys.executable, "-c", SCRIPT, "0"], "--check")
    result = probed["result"]
    assert result.get("skipped") is not True, result
    assert result["rc"] == 0
    assert result["stdout"] == "out hello"
    assert result["changed"] is False


def test_a_failing_command_fails_the_task_with_its_last_lines(
    run_playbook: Any, tmp_path: Path
) -> None:
    probed = _probe(run_playbook, tmp_path, [sys.executable, "-c", SCRIPT, "3"])
    result = probed["result"]
    assert result["rc"] == 3
    assert result["failed"] is True
    assert result["stdout"] == "out hello"
    assert result["msg"] == f"{sys.executable} exited with 3: first problem / second problem"
    assert result["changed"] is False


@pytest.mark.parametrize("check_mode", [[], ["--check"]], ids=["run", "check mode"])
def test_a_missing_program_is_an_rc_and_a_message_not_a_crash(
    run_playbook: Any, tmp_path: Path, check_mode: list[str]
) -> None:
    missing = str(tmp_path / "no-such-program")
    probed = _probe(run_playbook, tmp_path, [missing, "version"], *check_mode)
    result = probed["result"]
    assert result["rc"] == 127
    assert result["failed"] is True
    assert result["msg"] == f"cannot run {missing}: No such file or directory"
    assert result["stdout"] == result["stderr"] == ""
    assert result["stdout_lines"] == result["stderr_lines"] == []
    assert result["changed"] is False


def test_a_program_that_cannot_be_executed_is_rc_126(run_playbook: Any, tmp_path: Path) -> None:
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\necho never\n")
    not_executable.chmod(0o644)
    result = _probe(run_playbook, tmp_path, [str(not_executable)])["result"]
    assert result["rc"] == 126
    assert result["failed"] is True
    assert result["msg"] == f"cannot run {not_executable}: Permission denied"


def test_run_command_describes_the_outcome_as_the_command_module_does(
    role_plugin: Callable[[str, str, str], ModuleType],
) -> None:
    module = role_plugin("dra_cluster", "action_plugins", "dra_cluster_run_with_progress")
    seen: list[str] = []
    outcome = module.run_command(
        [sys.executable, "-c", SCRIPT, "5"], {"PROBE_GREETING": "hi"}, seen.append
    )
    assert seen == ["first problem", "", "second problem"]
    assert outcome["rc"] == 5
    assert outcome["stdout"] == "out hi"
    assert outcome["failed"] is True
    assert outcome["msg"].endswith("exited with 5: first problem / second problem")
    assert set(outcome) >= {"start", "end", "delta", "cmd", "stderr_lines", "stdout_lines"}
