"""dra_cluster_write_file: a file of the controller holds the content and mode asked for.

kind_config.yml (kind's cluster config) and kind.yml (the kubeconfig) write
their files with it instead of ansible.builtin.template/copy, whose module
process costs seconds on every run. What those modules promised must hold:
the file is written only when its content or mode differs (a second run
reports no change and leaves the file alone), check mode reports the change
it would make and writes nothing, --diff shows it, and bad input is a clear
error. Each case runs the real ansible-playbook (tests/ansible/write_file.yml).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

CONTENT = "kind: Cluster\nname: dra-demo\n"


def _write(
    run_playbook: Any, dest: Path, content: str = CONTENT, mode: Any = "0600", *args: str
) -> Any:
    return run_playbook(
        "tests/ansible/write_file.yml",
        "--extra-vars",
        json.dumps({"file_dest": str(dest), "file_content": content, "file_mode": mode}),
        *args,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_written_and_a_second_run_changes_nothing(
    run_playbook: Any, tmp_path: Path
) -> None:
    dest = tmp_path / "kubeconfig"
    first = _write(run_playbook, dest)
    assert first.returncode == 0, first.output
    assert first.recap["changed"] == 1
    assert dest.read_text() == CONTENT
    assert _mode(dest) == 0o600
    written = dest.stat()

    second = _write(run_playbook, dest)
    assert second.returncode == 0, second.output
    assert second.recap["changed"] == 0, second.output
    assert dest.stat().st_ino == written.st_ino
    assert dest.stat().st_mtime_ns == written.st_mtime_ns
    # Nothing left beside it (the temporary file is renamed over it).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubeconfig"]


def test_other_content_is_replaced_and_the_owner_kept(run_playbook: Any, tmp_path: Path) -> None:
    dest = tmp_path / "config"
    dest.write_text("old\n")
    dest.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(dest, 65534, 65534)
    result = _write(run_playbook, dest)
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 1
    assert dest.read_text() == CONTENT
    assert _mode(dest) == 0o600
    if os.geteuid() == 0:
        assert (dest.stat().st_uid, dest.stat().st_gid) == (65534, 65534)


def test_a_changed_mode_alone_is_put_back(run_playbook: Any, tmp_path: Path) -> None:
    dest = tmp_path / "kubeconfig"
    dest.write_text(CONTENT)
    dest.chmod(0o644)
    inode = dest.stat().st_ino
    result = _write(run_playbook, dest)
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 1
    assert _mode(dest) == 0o600
    assert dest.stat().st_ino == inode  # chmod-ed, not rewritten


def test_check_mode_and_diff_report_the_change_and_write_nothing(
    run_playbook: Any, tmp_path: Path
) -> None:
    dest = tmp_path / "config"
    dest.write_text("kind: Cluster\nname: old-name\n")
    dest.chmod(0o644)
    result = _write(run_playbook, dest, CONTENT, "0600", "--check", "--diff")
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 1
    assert dest.read_text() == "kind: Cluster\nname: old-name\n"
    assert _mode(dest) == 0o644
    assert "-name: old-name" in result.output
    assert "+name: dra-demo" in result.output
    said = " ".join(result.output.split())  # the mode diff is indented YAML
    assert "- mode: '0644' + mode: '0600'" in said, result.output

    absent = tmp_path / "absent"
    result = _write(run_playbook, absent, CONTENT, "0600", "--check", "--diff")
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 1
    assert not absent.exists()
    assert f"before: {absent} (absent)" in result.output


def test_check_mode_on_a_right_file_reports_no_change(run_playbook: Any, tmp_path: Path) -> None:
    dest = tmp_path / "config"
    dest.write_text(CONTENT)
    dest.chmod(0o600)
    result = _write(run_playbook, dest, CONTENT, "0600", "--check", "--diff")
    assert result.returncode == 0, result.output
    assert result.recap["changed"] == 0, result.output


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (420, "mode must be an octal string such as '0644', not 420"),
        ("rw-r--r--", "mode must be an octal string such as '0644', not 'rw-r--r--'"),
        ("17777", "mode '17777' is not a file permission (0000 to 7777)"),
    ],
)
def test_a_bad_mode_is_refused_and_nothing_written(
    run_playbook: Any, tmp_path: Path, mode: Any, message: str
) -> None:
    dest = tmp_path / "config"
    result = _write(run_playbook, dest, CONTENT, mode)
    assert result.returncode != 0
    assert message in result.output, result.output
    assert not dest.exists()


def test_a_missing_directory_is_an_error_naming_the_file(run_playbook: Any, tmp_path: Path) -> None:
    dest = tmp_path / "missing" / "config"
    result = _write(run_playbook, dest)
    assert result.returncode != 0
    assert f"cannot write {dest}: [Errno 2] No such file or directory" in result.output, (
        result.output
    )
    assert not dest.parent.exists()


def test_a_directory_in_the_way_is_an_error(run_playbook: Any, tmp_path: Path) -> None:
    result = _write(run_playbook, tmp_path)
    assert result.returncode != 0
    assert f"cannot read {tmp_path}: {tmp_path} is not a regular file" in result.output
