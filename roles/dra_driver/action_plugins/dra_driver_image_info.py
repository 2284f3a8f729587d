"""Action dra_driver_image_info: community.docker.docker_image_info for one
image, answered in Ansible's own process when the Docker daemon is this
machine's Unix socket.

Every run asks whether the driver image of this content exists. The module
answers in 1.1-1.5 s here, nearly all of it the start of a new Python process
for the module; the daemon answers in milliseconds. So when DOCKER_HOST names a
Unix socket, or is unset (the module's default, /var/run/docker.sock), the
action asks the Engine API itself (GET /images/{name}/json). Any other daemon
(tcp, ssh, TLS settings) is left to the module, with the same arguments.

Arguments: name, a list of image references (as the module takes it).
Returns images, the inspect documents of the images that exist (as the
module does). Read-only: runs in check mode too, never reports a change.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Seconds for the daemon to answer: a stuck daemon is an error, not a hang.
TIMEOUT = 30
# Settings the module reads besides DOCKER_HOST: with any of them set, the
# daemon is not simply this machine's socket.
TLS_ENVIRONMENT = ("DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker daemon's)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(TIMEOUT)
        connection.connect(self.socket_path)
        self.sock = connection


def local_socket(environment: dict[str, str]) -> str | None:
    """The Unix socket the module would talk to, or None when it would talk to
    anything else (then the module answers)."""
    if any(environment.get(name) for name in TLS_ENVIRONMENT):
        return None
    host = environment.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if not host.startswith("unix://"):
        return None
    return host.removeprefix("unix://")


def inspect_images(socket_path: str, names: list[str]) -> list[dict[str, Any]]:
    """The inspect documents of those of `names` the daemon has."""
    images = []
    for name in names:
        connection = _UnixConnection(socket_path)
        try:
            connection.request("GET", f"/images/{quote(name, safe='/:@')}/json")
            response = connection.getresponse()
            body = response.read()
        except OSError as error:
            raise AnsibleActionFail(
                f"Error connecting to the Docker daemon at unix://{socket_path}: {error}"
            ) from error
        finally:
            connection.close()
        if response.status == 404:
            continue
        if response.status != 200:
            raise AnsibleActionFail(
                f"Docker answered {response.status} to inspecting {name}: "
                f"{body.decode(errors='replace').strip()}"
            )
        images.append(json.loads(body))
    return images


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("name",))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        names = self._task.args.get("name")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise AnsibleActionFail("name must be a list of image references")
        socket_path = local_socket(dict(os.environ))
        if socket_path is None:
            module_result: dict[str, Any] = self._execute_module(
                module_name="community.docker.docker_image_info",
                module_args={"name": names},
                task_vars=task_vars,
            )
            result.update(module_result)
            return result
        result.update(images=inspect_images(socket_path, names), changed=False)
        return result
