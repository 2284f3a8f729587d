"""`localcluster up|down|import-image --json`: one JSON object on stdout whose
`changed` says whether the command changed the machine (what the Ansible role
reads instead of sentences)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcluster import cli
from localcluster.cluster import UpResult


def test_up_report_is_changed_only_when_something_started(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    started = cli.up_report(UpResult(("etcd", "kube-apiserver"), 12.345), kubeconfig, "ctx")
    assert started == {
        "command": "up",
        "changed": True,
        "started": ["etcd", "kube-apiserver"],
        "seconds": 12.3,
        "kubeconfig": str(kubeconfig),
        "context": "ctx",
    }
    again = cli.up_report(UpResult((), 0.2), kubeconfig, "ctx")
    assert again["changed"] is False
    assert again["started"] == []


def test_import_report_is_changed_when_any_image_was_new(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    mixed = cli.import_report(archive, [("a:1", False), ("b:2", True)])
    assert mixed["changed"] is True
    assert mixed["archive"] == str(archive)
    assert mixed["images"] == [
        {"reference": "a:1", "changed": False},
        {"reference": "b:2", "changed": True},
    ]
    assert cli.import_report(archive, [("a:1", False)])["changed"] is False
    assert cli.import_report(archive, [])["changed"] is False


def test_down_json_on_a_machine_without_cluster_reports_no_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run directory that never held a cluster: the real `down` has nothing
    # to stop. (No cluster is started, so this needs no lock.)
    run_dir = tmp_path / "run"
    assert cli.main(["--run-dir", str(run_dir), "down", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"command": "down", "changed": False}


def test_every_changing_command_accepts_json() -> None:
    parser = cli._parser()
    for argv in (["up", "--json"], ["down", "--json"], ["import-image", "x.tar", "--json"]):
        assert parser.parse_args(argv).json is True
