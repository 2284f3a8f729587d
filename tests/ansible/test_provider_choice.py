"""`dra_cluster_provider: auto` chooses kind where kind's node containers can run, and says why.

Runs the real playbook's input phase (`--tags always`: validation and the
read-only provider probes, nothing else) on this machine. Docker is never
usable for kind here: the kind binary points at nothing, so kind on Docker
always has a reason against it. Whether podman can run kind's nodes is
probed for real; a podman that cannot is a stand-in script on PATH (a
fake, named so) that fails as runc does without podman's settings for kind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest


def _input_phase(run_playbook: Any, safety_net: dict[str, Any], **variables: Any) -> Any:
    result = run_playbook(
        "playbooks/site.yml",
        "--tags",
        "always",
        "--extra-vars",
        json.dumps({**safety_net, **variables}),
    )
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 0, result.output
    return result


def _said(result: Any) -> str:
    """The output with the YAML callback's line folding and quote doubling undone."""
    return " ".join(result.output.split()).replace("''", "'")


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_auto_chooses_kind_on_podman_where_podman_runs_kind_nodes(
    run_playbook: Any, safety_net: dict[str, Any]
) -> None:
    said = _said(_input_phase(run_playbook, safety_net))
    assert (
        "Provider kind (auto): podman can run kind's privileged node containers here; "
        "kind cannot run on Docker:" in said
    ), said
    assert "kind is not installed (/nonexistent/kind" in said


def test_auto_falls_back_to_local_and_names_both_reasons(
    run_playbook: Any,
    tmp_path: Path,
    safety_net: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = tmp_path / "fake-bin"
    fakes.mkdir()
    fake_podman = fakes / "podman"  # a fake: a podman whose runc cannot apply the ulimits
    fake_podman.write_text(
        "#!/bin/sh\n"
        "echo 'Error: runc: error setting rlimit type 7: operation not permitted' >&2\n"
        "exit 126\n"
    )
    fake_podman.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakes}:{os.environ['PATH']}")

    said = _said(_input_phase(run_playbook, safety_net))
    assert "Provider local (auto), because kind cannot run here: on Docker:" in said
    assert (
        "on podman: `podman run --privileged` fails: Error: runc: error setting rlimit type 7"
        in said
    ), said


def test_a_fixed_runtime_is_the_only_one_tried(
    run_playbook: Any, safety_net: dict[str, Any]
) -> None:
    said = _said(_input_phase(run_playbook, safety_net, dra_cluster_kind_runtime="docker"))
    assert "Provider local (auto), because kind cannot run here: on Docker:" in said
    assert ", on podman:" not in said  # podman was not tried
