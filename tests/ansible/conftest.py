"""Shared helpers for the tests of the Ansible delivery (tests/ansible/).

The tests run the real ansible-playbook of the virtual environment that runs
pytest, from the repository root, with the repository's ansible.cfg.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KIND_CONFIG_CHECK = REPO / "tools" / "kind-config-check"
RECAP_RE = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


@dataclass(frozen=True)
class Run:
    """The outcome of one ansible-playbook run."""

    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        match = RECAP_RE.search(self.output)
        assert match, f"no PLAY RECAP in output:\n{self.output}"
        return {
            "ok": int(match.group(2)),
            "changed": int(match.group(3)),
            "unreachable": int(match.group(4)),
            "failed": int(match.group(5)),
        }


def _tool(name: str) -> str:
    """A tool of the running virtual environment, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="session")
def ansible_playbook() -> str:
    return _tool("ansible-playbook")


@pytest.fixture(scope="session")
def run_playbook(ansible_playbook: str):  # type: ignore[no-untyped-def]
    """Run a playbook (path relative to the repository) with extra arguments."""

    def run(playbook: str, *args: str, timeout: float = 600) -> Run:
        env = dict(os.environ)
        env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
        env["ANSIBLE_NOCOLOR"] = "1"
        env["ANSIBLE_FORCE_COLOR"] = "0"
        env["PATH"] = f"{Path(ansible_playbook).parent}{os.pathsep}{env.get('PATH', '')}"
        completed = subprocess.run(
            [ansible_playbook, playbook, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(completed.returncode, completed.stdout + completed.stderr)

    return run


@pytest.fixture(scope="session")
def kind_config_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tools/kind-config-check, built once per session with the local Go."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: cannot build tools/kind-config-check")
    binary = tmp_path_factory.mktemp("kind-config-check") / "kind-config-check"
    subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=KIND_CONFIG_CHECK,
        check=True,
        timeout=600,
    )
    return binary


def load_role_plugin(role: str, kind: str, name: str) -> ModuleType:
    """A plugin file of a role (roles/ROLE/KIND/NAME.py), loaded by path as
    Ansible loads it (the plugin directories are not packages)."""
    path = REPO / "roles" / role / kind / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_role_filters(role: str) -> ModuleType:
    """A role's filter plugin module."""
    return load_role_plugin(role, "filter_plugins", f"{role}_filters")


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def role_plugin() -> Callable[[str, str, str], ModuleType]:
    """load_role_plugin, for the tests of the roles' actions and lookups."""
    return load_role_plugin


@pytest.fixture(scope="session")
def cluster_filters() -> ModuleType:
    return load_role_filters("dra_cluster")


@pytest.fixture(scope="session")
def driver_filters() -> ModuleType:
    return load_role_filters("dra_driver")


@pytest.fixture(scope="session")
def demo_filters() -> ModuleType:
    return load_role_filters("dra_demo")


def role_vars(role: str) -> dict[str, Any]:
    """The constants of a role (vars/main.yml), as YAML (templates unrendered)."""
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO / "roles" / role / "vars" / "main.yml").read_text()
    )
    return loaded


@pytest.fixture
def safety_net(tmp_path: Path) -> dict[str, Any]:
    """Variables that keep a regressed run of site.yml from changing this machine:
    kind and the localcluster CLI point at nothing, artifacts go to tmp_path."""
    return {
        "dra_cluster_kind_binary": "/nonexistent/kind",
        "dra_cluster_local_command": ["/nonexistent/localcluster"],
        "dra_cluster_artifacts_dir": str(tmp_path / "artifacts"),
        "dra_driver_artifacts_dir": str(tmp_path / "artifacts"),
    }
