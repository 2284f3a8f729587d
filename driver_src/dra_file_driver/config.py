"""Command line and environment → a checked, immutable configuration.

Every flag can also come from an environment variable (a DaemonSet sets
NODE_NAME and POD_UID from the downward API); a flag on the command line
wins. A missing or invalid value is reported with the flag and its variable,
before anything starts, so a misconfigured pod fails at once with a message
that says which setting to fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import names, socket_names
from .devices import MAX_ATTRIBUTE_STRING, inventory
from .unix_server import MAX_SOCKET_PATH

DEFAULT_DRIVER_NAME = "file.dra.example.com"
DEFAULT_REGISTRY_DIR = Path("/var/lib/kubelet/plugins_registry")
KUBELET_PLUGINS_DIR = Path("/var/lib/kubelet/plugins")
DEFAULT_CDI_DIR = Path("/var/run/cdi")
DEFAULT_FILE_DIR = Path("/etc/dra")
# 8 full slices; far more than a demo needs, small enough to keep the
# checkpoint and the slices cheap to rewrite.
MAX_FILE_COUNT = 1024
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the flag."""


@dataclass(frozen=True)
class Config:
    driver_name: str
    node_name: str
    # The driver pod's UID: set, the sockets carry it so that an old and a
    # new pod can serve side by side during a rolling update.
    pod_uid: str | None
    kubeconfig: Path | None
    registry_dir: Path
    plugin_dir: Path
    cdi_dir: Path
    file_dir: Path
    file_count: int
    shared: bool
    metrics_port: int | None
    health_port: int | None
    log_format: str
    log_level: str

    @property
    def dra_socket(self) -> Path:
        return socket_names.dra_socket(self.plugin_dir, self.pod_uid)

    @property
    def registration_socket(self) -> Path:
        return socket_names.registration_socket(self.registry_dir, self.driver_name, self.pod_uid)


# flag -> environment variable
ENV = {
    "--driver-name": "DRA_DRIVER_NAME",
    "--node-name": "NODE_NAME",
    "--pod-uid": "POD_UID",
    "--kubeconfig": "KUBECONFIG",
    "--registry-dir": "DRA_REGISTRY_DIR",
    "--plugin-dir": "DRA_PLUGIN_DIR",
    "--cdi-dir": "DRA_CDI_DIR",
    "--file-dir": "DRA_FILE_DIR",
    "--file-count": "DRA_FILE_COUNT",
    "--shared": "DRA_SHARED",
    "--metrics-port": "DRA_METRICS_PORT",
    "--health-port": "DRA_HEALTH_PORT",
    "--log-format": "DRA_LOG_FORMAT",
    "--log-level": "DRA_LOG_LEVEL",
}

_HELP = {
    "--driver-name": f"DRA driver name (default {DEFAULT_DRIVER_NAME})",
    "--node-name": "name of this node (required)",
    "--pod-uid": "UID of the driver's pod; puts it into the socket names for seamless "
    "rolling updates (default: fixed socket names, one driver per node)",
    "--kubeconfig": "kubeconfig file (default: in-cluster service account)",
    "--registry-dir": f"kubelet plugin registry directory (default {DEFAULT_REGISTRY_DIR})",
    "--plugin-dir": f"directory for the DRA socket and state (default {KUBELET_PLUGINS_DIR}/"
    "<driver-name>)",
    "--cdi-dir": f"directory for CDI specs (default {DEFAULT_CDI_DIR})",
    "--file-dir": f"host directory of the device files (default {DEFAULT_FILE_DIR})",
    "--file-count": f"number of file devices, 1-{MAX_FILE_COUNT} (default 1)",
    "--shared": "let several claims hold the same device (default false)",
    "--metrics-port": "serve Prometheus metrics on this TCP port (default off)",
    "--health-port": "serve gRPC health checks on this TCP port (default off)",
    "--log-format": "text or json (default text)",
    "--log-level": "debug, info, warning or error (default info)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dra-file-driver",
        description="DRA kubelet plugin that offers node-local files as devices. "
        "Each flag can also be set by the environment variable shown.",
    )
    for flag, env in ENV.items():
        help_text = f"{_HELP[flag]} [env {env}]"
        if flag == "--shared":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(
                flag, metavar=flag.removeprefix("--").upper().replace("-", "_"), help=help_text
            )
    return parser


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Build the configuration; raise ConfigError naming the offending flag."""
    args = vars(_parser().parse_args(argv))

    def raw(flag: str) -> str | None:
        value = args[flag.removeprefix("--").replace("-", "_")]
        if value is not None:
            return str(value)
        env_value = environ.get(ENV[flag])
        return env_value if env_value not in (None, "") else None

    def get(flag: str, convert: Callable[[str], T], default: T) -> T:
        value = raw(flag)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            raise ConfigError(f"{flag} ({ENV[flag]}): invalid value {value!r}: {exc}") from exc

    def check(flag: str, problem: str | None) -> None:
        if problem:
            raise ConfigError(f"{flag} ({ENV[flag]}): {problem}")

    driver_name = get("--driver-name", str, DEFAULT_DRIVER_NAME)
    check(
        "--driver-name", _prefixed("not a valid driver name", names.driver_name_error(driver_name))
    )
    node_name = get("--node-name", str, "")
    check(
        "--node-name",
        "is required"
        if not node_name
        else _prefixed("not a valid node name", names.dns1123_subdomain_error(node_name)),
    )
    pod_uid = get("--pod-uid", str, None)
    check(
        "--pod-uid",
        None if pod_uid is None else _prefixed("not a valid UID", names.uid_error(pod_uid)),
    )
    kubeconfig = get("--kubeconfig", Path, None)
    check(
        "--kubeconfig",
        None if kubeconfig is None or kubeconfig.is_file() else f"{kubeconfig} is not a file",
    )

    file_count = get("--file-count", _int_in_range(1, MAX_FILE_COUNT), 1)
    config = Config(
        driver_name=driver_name,
        node_name=node_name,
        pod_uid=pod_uid,
        kubeconfig=kubeconfig,
        registry_dir=get("--registry-dir", _absolute_path, DEFAULT_REGISTRY_DIR),
        plugin_dir=get("--plugin-dir", _absolute_path, KUBELET_PLUGINS_DIR / driver_name),
        cdi_dir=get("--cdi-dir", _absolute_path, DEFAULT_CDI_DIR),
        file_dir=get("--file-dir", _absolute_path, DEFAULT_FILE_DIR),
        file_count=file_count,
        shared=get("--shared", _boolean, False),
        metrics_port=get("--metrics-port", _int_in_range(1, 65535), None),
        health_port=get("--health-port", _int_in_range(1, 65535), None),
        log_format=get("--log-format", _one_of(LOG_FORMATS), "text"),
        log_level=get("--log-level", _one_of(LOG_LEVELS), "info"),
    )

    check("--registry-dir", _socket_path_problem(config.registration_socket))
    check("--plugin-dir", _socket_path_problem(config.dra_socket))
    longest_path = str(inventory(config.file_dir, file_count)[-1].path)
    check(
        "--file-dir",
        None
        if len(longest_path) <= MAX_ATTRIBUTE_STRING
        else (
            f"device path {longest_path} is longer than {MAX_ATTRIBUTE_STRING} characters, "
            "the limit of a ResourceSlice attribute"
        ),
    )
    if config.health_port is not None and config.health_port == config.metrics_port:
        check("--health-port", "must differ from --metrics-port")
    return config


def _prefixed(prefix: str, problem: str | None) -> str | None:
    return f"{prefix}: {problem}" if problem else None


def _socket_path_problem(path: Path) -> str | None:
    if socket_names.too_long(path):
        return f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes"
    return None


def _absolute_path(value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


def _int_in_range(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return convert


def _one_of(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value.lower()

    return convert


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")
