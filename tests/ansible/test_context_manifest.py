"""dra_driver's lookup dra_driver_context_manifest, the input of the driver
image's tag: one line per file (path, mode, SHA-1), sorted, ignored files
left out. It replaced ansible.builtin.find plus a filter, and must write
what that pair wrote, or an unchanged source would get a new tag (and a
rebuild) after an upgrade of the role. Checked against the real find module."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE_VARS = REPO / "roles" / "dra_driver" / "tasks" / "image.yml"


@pytest.fixture(scope="module")
def lookup(role_plugin: Callable[[str, str, str], ModuleType]) -> ModuleType:
    return role_plugin("dra_driver", "lookup_plugins", "dra_driver_context_manifest")


def _ignored_pattern() -> str:
    """The pattern image.yml gives the lookup (one source for it)."""
    tasks: list[dict[str, Any]] = yaml.safe_load(ROLE_VARS.read_text())
    for task in tasks:
        pattern = task.get("vars", {}).get("__ignored")
        if pattern:
            return str(pattern)
    raise AssertionError("image.yml sets no __ignored pattern")


def _context(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "pkg" / "b.py").write_text("B = 1\n")
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (root / "pkg" / "run.sh").chmod(0o755)
    (root / "pkg" / "__pycache__" / "b.cpython-312.pyc").write_bytes(b"\0")
    (root / ".hidden" / "config").write_text("x\n")
    (root / "extra-ca-build.pem").write_text("not part of the tag\n")
    (root / "link.py").symlink_to(root / "pkg" / "b.py")
    return root


def test_lookup_writes_the_manifest_find_and_the_old_filter_wrote(
    run_playbook: Any, tmp_path: Path
) -> None:
    root = _context(tmp_path / "context")
    answer_file = tmp_path / "answer.json"
    ignored = _ignored_pattern()
    run = run_playbook(
        "tests/ansible/context_manifest.yml",
        "-e",
        json.dumps(
            {"context_dir": str(root), "context_ignored": ignored, "answer_file": str(answer_file)}
        ),
    )
    assert run.returncode == 0, run.output
    answer = json.loads(answer_file.read_text())
    # The filter the lookup replaced: relative path, mode, checksum; sorted.
    skip = re.compile(ignored)
    expected = "".join(
        sorted(
            f"{os.path.relpath(path, root)} {mode} {checksum};"
            for path, mode, checksum in answer["find"]
            if not skip.search(os.path.relpath(path, root))
        )
    )
    assert answer["lookup"] == expected
    # and what that is, spelled out: caches, the CA bundle and the link are out.
    paths = [entry.split(" ")[0] for entry in answer["lookup"].split(";") if entry]
    assert paths == [".hidden/config", "Dockerfile", "pkg/b.py", "pkg/run.sh"]
    assert "pkg/run.sh 0755 " in answer["lookup"]


def test_a_changed_file_changes_the_manifest(tmp_path: Path, lookup: ModuleType) -> None:
    root = _context(tmp_path / "context")
    before = lookup.context_manifest(str(root), _ignored_pattern())
    (root / "pkg" / "__pycache__" / "b.cpython-312.pyc").write_bytes(b"\1")
    assert lookup.context_manifest(str(root), _ignored_pattern()) == before
    (root / "pkg" / "b.py").write_text("B = 2\n")
    assert lookup.context_manifest(str(root), _ignored_pattern()) != before
    (root / "pkg" / "b.py").write_text("B = 1\n")
    (root / "pkg" / "b.py").chmod(0o600)
    assert lookup.context_manifest(str(root), _ignored_pattern()) != before


def test_a_missing_context_is_an_error_naming_it(tmp_path: Path, lookup: ModuleType) -> None:
    from ansible.errors import AnsibleLookupError

    with pytest.raises(AnsibleLookupError, match="nowhere"):
        lookup.context_manifest(str(tmp_path / "nowhere"), "(?!)")
