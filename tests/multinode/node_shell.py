"""Commands run inside a node (a kind node container): device files, the kubelet.

A node is entered with the command prefix of the settings (`podman exec
<node>` for kind on podman), so what the tests read is what the node itself
holds, not what the API or a pod claims it holds.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass

from .settings import Settings

# Seconds a single command on a node may take.
NODE_COMMAND_TIMEOUT = 60

# Prints "<path>\t<base64 of the content>" for every regular file of the
# directory $1 (none when the directory does not exist). base64 keeps the
# exact bytes: a missing final newline or a stray blank line shows. Hidden
# files (the driver's atomic-write temporaries) are not device files.
_READ_FILES_SCRIPT = """\
[ -d "$1" ] || exit 0
for f in "$1"/*; do
    [ -f "$f" ] || continue
    printf '%s\\t%s\\n' "$f" "$(base64 -w0 "$f")"
done
"""


class NodeCommandError(AssertionError):
    """A command on a node failed; the message has the command and its output."""


@dataclass(frozen=True)
class DeviceFile:
    node: str
    path: str
    content: bytes

    @property
    def pod_names(self) -> list[str]:
        """The names the file lists, one per line, as the driver writes them."""
        return self.content.decode().splitlines()

    @property
    def well_formed(self) -> bool:
        """Each line a non-empty name ending in a newline (the driver's format)."""
        text = self.content.decode(errors="replace")
        return text == "".join(f"{name}\n" for name in text.splitlines() if name)


class NodeShell:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def run(self, node: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self._settings.node_argv(node, *command)
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=NODE_COMMAND_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise NodeCommandError(
                f"on node {node}: {' '.join(argv)} exited {result.returncode}: "
                f"{(result.stdout + result.stderr).strip()}"
            )
        return result

    def device_files(self, node: str, directory: str) -> dict[str, DeviceFile]:
        """Every file of directory on node, by path."""
        output = self.run(node, "sh", "-c", _READ_FILES_SCRIPT, "sh", directory).stdout
        files: dict[str, DeviceFile] = {}
        for line in output.splitlines():
            path, _, encoded = line.partition("\t")
            files[path] = DeviceFile(node, path, base64.b64decode(encoded))
        return files

    def kubelet_pid(self, node: str) -> int | None:
        """The kubelet's process id on node, None while none runs."""
        result = self.run(node, "pgrep", "-x", "kubelet", check=False)
        if result.returncode == 1:  # pgrep: no process matched
            return None
        if result.returncode != 0:
            raise NodeCommandError(f"on node {node}: pgrep -x kubelet: {result.stderr.strip()}")
        pids = [int(pid) for pid in result.stdout.split()]
        if len(pids) != 1:
            raise NodeCommandError(f"on node {node}: {len(pids)} kubelet processes: {pids}")
        return pids[0]

    def kubelet_unit(self, node: str, prop: str) -> str:
        """A property of the node's kubelet systemd unit (kind's nodes run systemd)."""
        return self.run(node, "systemctl", "show", "--property", prop, "--value", "kubelet").stdout

    def kubelet_restarts(self, node: str) -> int:
        """How often systemd restarted the node's kubelet."""
        return int(self.kubelet_unit(node, "NRestarts"))

    def kubelet_started_at(self, node: str) -> float:
        """When the node's kubelet started, in time.monotonic() seconds.

        A node container shares the machine's kernel and its monotonic clock
        (no time namespace), so this compares with the tests' own clock.
        """
        return int(self.kubelet_unit(node, "ExecMainStartTimestampMonotonic")) / 1e6

    def kill_kubelet(self, node: str) -> None:
        """SIGKILL the node's kubelet (systemd on the node restarts it)."""
        self.run(node, "pkill", "-9", "-x", "kubelet")
