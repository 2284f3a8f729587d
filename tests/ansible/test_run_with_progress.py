"""dra_cluster_run_with_progress: a long command's progress is on screen while it runs.

The first run builds Kubernetes or kind's node image for many minutes; those
tasks use this action so that their progress lines appear as they come. The
proof is a handshake: the command writes a line to stderr and then waits for
a file that the test creates only once it has read that line from
ansible-playbook's output. Were the line held back until the command ends,
the command would give up waiting and fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]

# Waits up to 60 s for the file named by $1, then prints its answer.
HANDSHAKE = """
import os, sys, time
print("building, step 1 of 2", file=sys.stderr, flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]):
    if time.monotonic() > deadline:
        print("nobody saw step 1", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(0.05)
print("step 2 of 2, greeting " + os.environ["PROGRESS_GREETING"], file=sys.stderr, flush=True)
print('{"changed": true}')
"""


def _playbook(argv: list[str]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "tests/ansible/run_with_progress.yml",
            "--extra-vars",
            json.dumps({"progress_argv": argv}),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_progress_lines_appear_while_the_command_runs(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    run = _playbook([sys.executable, "-c", HANDSHAKE, str(seen)])
    assert run.stdout is not None
    output = []
    timer = threading.Timer(120, run.kill)  # a hung run fails the test, not the suite
    timer.start()
    try:
        for line in run.stdout:
            output.append(line)
            if "step | building, step 1 of 2" in line:
                seen.touch()
        run.wait()
    finally:
        timer.cancel()
    text = "".join(output)
    assert run.returncode == 0, text
    assert seen.exists(), f"step 1 never showed while the command ran:\n{text}"
    assert "step | step 2 of 2, greeting hello" in text
    assert 'answer={"changed": true} rc=0' in text


def test_a_failure_names_the_exit_code_and_the_last_lines() -> None:
    script = (
        "import sys\n"
        "print('fetching', file=sys.stderr)\n"
        "print('no space left', file=sys.stderr)\n"
        "sys.exit(4)\n"
    )
    run = _playbook([sys.executable, "-c", script])
    text, _ = run.communicate(timeout=120)
    assert run.returncode != 0, text
    assert "exited with 4: fetching / no space left" in " ".join(text.split()), text


def test_run_streaming_hands_over_stderr_lines_in_order_and_keeps_stdout_apart(
    role_plugin: Callable[[str, str, str], ModuleType],
) -> None:
    module = role_plugin("dra_cluster", "action_plugins", "dra_cluster_run_with_progress")
    lines: list[str] = []
    script = (
        "import sys\n"
        "for i in range(3):\n"
        "    print(f'line {i}', file=sys.stderr, flush=True)\n"
        "print('x' * 200000)\n"  # more than a pipe holds: must not stall
    )
    rc, stdout, stderr = module.run_streaming([sys.executable, "-c", script], {}, lines.append)
    assert rc == 0
    assert lines == ["line 0", "line 1", "line 2"]
    assert stdout == "x" * 200000 + "\n"
    assert stderr == "line 0\nline 1\nline 2\n"
