"""The README documents every variable a user can set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ("dra_cluster", "dra_driver", "dra_demo")


def _wired_variables() -> set[str]:
    """Inputs the playbook sets from another role's outputs: not for users to set."""
    wiring = yaml.safe_load((REPO / "playbooks" / "vars" / "wiring.yml").read_text())
    return set(wiring)


@pytest.mark.parametrize("role", ROLES)
def test_every_user_variable_of_the_role_is_in_the_readme(role: str) -> None:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    variables = set(specs["argument_specs"]["main"]["options"]) - _wired_variables()
    assert variables, f"{role} declares no variables?"
    readme = (REPO / "README.md").read_text()
    undocumented = sorted(name for name in variables if f"`{name}`" not in readme)
    assert undocumented == []
