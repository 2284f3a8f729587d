"""What the multi-node tests are told about the cluster they run against.

The tests never create the cluster: they are given one where the demo has
converged (molecule's kind scenario, or `playbooks/site.yml` on any cluster
with more than one node), through pytest options or environment variables
(conftest.py). Every name the demo uses is a setting, with the defaults of
the Ansible roles.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

# Stands for the node's name in the node command template.
NODE_PLACEHOLDER = "{node}"


class SettingsError(ValueError):
    """A setting is unusable; the message names the option."""


@dataclass(frozen=True)
class Settings:
    kubeconfig: Path
    # Empty: the kubeconfig's current context.
    context: str
    # argv prefix that runs a command on a node, "{node}" standing for its
    # name, e.g. ["podman", "exec", "{node}"] for a kind node on podman.
    node_exec: tuple[str, ...]
    driver_name: str
    driver_namespace: str
    driver_selector: str
    demo_namespace: str
    deployment: str
    # Directory of the device files on every node (the driver's file dir).
    file_dir: str
    # The node whose kubelet is killed; empty: the first worker by name.
    kill_node: str
    # Seconds to wait for any convergence (pods, files, slices).
    timeout: float

    def node_argv(self, node: str, *command: str) -> list[str]:
        """argv running command on node."""
        return [part.replace(NODE_PLACEHOLDER, node) for part in self.node_exec] + list(command)


def parse_node_exec(template: str) -> tuple[str, ...]:
    """The node command template as an argv prefix; it must name the node."""
    argv = tuple(shlex.split(template))
    if not argv or not any(NODE_PLACEHOLDER in part for part in argv):
        raise SettingsError(
            f"--multinode-node-exec={template!r}: a command prefix that names the node as "
            f"{NODE_PLACEHOLDER}, e.g. 'podman exec {NODE_PLACEHOLDER}'"
        )
    return argv


def parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise SettingsError(f"--multinode-timeout={value!r}: a positive number of seconds")
    return seconds


def parse_kubeconfig(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise SettingsError(f"--multinode-kubeconfig={value!r}: no such file")
    return path.resolve()
