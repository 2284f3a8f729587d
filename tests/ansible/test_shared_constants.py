"""One source for the constants the driver's Python and the roles' YAML share.

The roles check their inputs before anything changes, with the same rules
the driver applies when it starts (driver_src/dra_file_driver: names.py,
config.py, devices.py). These tests fail when a limit, a name rule, a
default or a label in the roles' YAML and in the Python disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

# The editable install's import hook is invisible to mypy; the driver itself
# is type-checked by the repository's main mypy run.
from dra_file_driver import config, devices, names  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parents[2]
ROLES = ("dra_cluster", "dra_driver", "dra_demo")


def _yaml(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def _vars(role: str) -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(f"roles/{role}/vars/main.yml")
    return loaded


def _defaults(role: str) -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(f"roles/{role}/defaults/main.yml")
    return loaded


def _matches(pattern: str, value: str) -> bool:
    # Jinja's `match` test is re.match: anchored at the start only.
    return re.match(pattern, value) is not None


LABELS = [
    "a",
    "a" * 63,
    "a" * 64,
    "dra-system",
    "1abc",
    "-a",
    "a-",
    "A",
    "a.b",
    "a_b",
    "",
    "abc\n",
    "ab\nc",
    "a b",
]
SUBDOMAINS = [
    *LABELS,
    "file.dra.example.com",
    "a..b",
    ".a",
    "a.",
    "a.-b",
    ".".join(["a" * 63] * 4)[:253],
    ".".join(["a" * 63] * 4),  # 255 characters
    "a" * 64 + ".b",  # a label longer than 63 inside a subdomain
]


@pytest.mark.parametrize("role", ROLES)
def test_dns_label_rule_is_the_drivers(role: str) -> None:
    pattern = _vars(role)[f"__{role}_dns_label_pattern"]
    for value in LABELS:
        python_ok = names.dns1123_label_error(value) is None
        assert _matches(pattern, value) == python_ok, (role, value)


@pytest.mark.parametrize("role", ROLES)
def test_dns_subdomain_rule_is_the_drivers(role: str) -> None:
    pattern = _vars(role)[f"__{role}_dns_subdomain_pattern"]
    for value in SUBDOMAINS:
        python_ok = names.dns1123_subdomain_error(value) is None
        assert _matches(pattern, value) == python_ok, (role, value)


def test_driver_limits_are_the_drivers() -> None:
    driver_vars = _vars("dra_driver")
    assert driver_vars["__dra_driver_name_max"] == names.DRIVER_NAME_MAX
    assert driver_vars["__dra_driver_file_count_max"] == config.MAX_FILE_COUNT
    assert driver_vars["__dra_driver_attribute_max"] == devices.MAX_ATTRIBUTE_STRING
    # The argument specification tells users the same numbers.
    options = _yaml("roles/dra_driver/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert (
        f"at most {names.DRIVER_NAME_MAX} characters" in options["dra_driver_name"]["description"]
    )
    assert f"1 to {config.MAX_FILE_COUNT}" in options["dra_driver_file_count"]["description"]


def test_driver_name_rule_in_the_role_is_the_drivers() -> None:
    """The 63-character driver name: the role accepts exactly what the driver does."""
    driver_vars = _vars("dra_driver")
    pattern = driver_vars["__dra_driver_dns_subdomain_pattern"]
    limit = driver_vars["__dra_driver_name_max"]
    for value in ["file.dra.example.com", "a" * 63, "a" * 64, "a." + "b" * 61, "a." + "b" * 62]:
        role_ok = len(value) <= limit and _matches(pattern, value)
        assert role_ok == (names.driver_name_error(value) is None), value


def test_defaults_are_the_drivers() -> None:
    driver = _defaults("dra_driver")
    demo = _defaults("dra_demo")
    assert driver["dra_driver_name"] == demo["dra_demo_driver_name"] == config.DEFAULT_DRIVER_NAME
    assert driver["dra_driver_file_dir"] == demo["dra_demo_driver_file_dir"]
    assert driver["dra_driver_file_dir"] == str(config.DEFAULT_FILE_DIR)
    assert driver["dra_driver_namespace"] == demo["dra_demo_driver_namespace"]


def test_labels_and_names_shared_between_roles_agree() -> None:
    driver_vars = _vars("dra_driver")
    demo_vars = _vars("dra_demo")
    app = driver_vars["__dra_driver_app_label"]
    # How the existing provider finds the pod to enter on each node.
    wiring = _yaml("playbooks/vars/wiring.yml")["dra_cluster_node_exec_pod"]
    cluster_default = _defaults("dra_cluster")["dra_cluster_node_exec_pod"]
    assert wiring["selector"] == cluster_default["selector"] == f"app={app}"
    assert demo_vars["__dra_demo_driver_selector"] == f"app={app}"
    assert cluster_default["namespace"] == _defaults("dra_driver")["dra_driver_namespace"]
    daemonset = (REPO / "roles/dra_driver/templates/daemonset.yaml.j2").read_text()
    assert re.search(rf"^\s+- name: {wiring['container']}$", daemonset, re.MULTILINE)
    assert wiring["container"] == cluster_default["container"]
    # One field manager for every server-side apply of the project.
    assert driver_vars["__dra_driver_field_manager"] == demo_vars["__dra_demo_field_manager"]
    part_of = "app.kubernetes.io/part-of"
    assert driver_vars["__dra_driver_labels"][part_of] == demo_vars["__dra_demo_labels"][part_of]
