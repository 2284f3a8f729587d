"""Settings and fixtures of the tests on a real multi-node cluster.

The cluster is given, never created here: one where the demo has converged
(e.g. `molecule converge -s kind`, then molecule/shared/multinode_tests.yml
runs these tests). Every test restores what it changed, so the cluster is as
converged afterwards. Without a kubeconfig every test is skipped, saying so.

    pytest -m multinode tests/multinode \\
        --multinode-kubeconfig=.artifacts/kubeconfig-kind-dra-molecule \\
        --multinode-context=kind-dra-molecule --multinode-node-exec='podman exec {node}'

(kind on podman also needs CONTAINERS_CONF in the environment, see
localcluster.kind_cluster.) Each option can be given as the environment
variable named in its help instead. Figures (the kubelet-restart recovery
time) are printed at the end of the run, passed or not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from .demo_state import DemoReader
from .kube_api import KubeApi
from .node_shell import NodeShell
from .settings import (
    Settings,
    SettingsError,
    parse_kubeconfig,
    parse_node_exec,
    parse_timeout,
)

# option (without --multinode-) -> (environment variable, default, help)
_OPTIONS: dict[str, tuple[str, str, str]] = {
    "kubeconfig": ("DRA_MULTINODE_KUBECONFIG", "", "kubeconfig of the converged cluster"),
    "context": ("DRA_MULTINODE_CONTEXT", "", "context in it (default: its current context)"),
    "node-exec": (
        "DRA_MULTINODE_NODE_EXEC",
        "podman exec {node}",
        "command prefix that runs a command on a node, {node} standing for its name",
    ),
    "driver-name": ("DRA_MULTINODE_DRIVER_NAME", "file.dra.example.com", "the DRA driver"),
    "driver-namespace": ("DRA_MULTINODE_DRIVER_NAMESPACE", "dra-system", "the driver's namespace"),
    "driver-selector": (
        "DRA_MULTINODE_DRIVER_SELECTOR",
        "app=dra-file-driver",
        "label selector of the driver's pods",
    ),
    "demo-namespace": ("DRA_MULTINODE_DEMO_NAMESPACE", "dra-demo", "the demo's namespace"),
    "deployment": ("DRA_MULTINODE_DEPLOYMENT", "dra-test-deployment", "the demo's Deployment"),
    "file-dir": ("DRA_MULTINODE_FILE_DIR", "/etc/dra", "directory of the device files on a node"),
    "kill-node": (
        "DRA_MULTINODE_KILL_NODE",
        "",
        "node whose kubelet is killed (default: the first node that is not a control plane)",
    ),
    "timeout": ("DRA_MULTINODE_TIMEOUT", "300", "seconds to wait for the demo to converge"),
}

_FIGURES = pytest.StashKey[list[str]]()
_SETTINGS = pytest.StashKey[Settings | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("multinode", "tests on a converged multi-node cluster")
    for name, (env, default, text) in _OPTIONS.items():
        group.addoption(
            f"--multinode-{name}",
            default=None,
            help=f"{text}; environment: {env}" + (f"; default: {default}" if default else ""),
        )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []
    # Bad settings stop the run before any test, with the option named.
    try:
        config.stash[_SETTINGS] = _settings(config)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None


def _option(config: pytest.Config, name: str) -> str:
    env, default, _ = _OPTIONS[name]
    given = config.getoption(f"--multinode-{name}")
    return str(given) if given is not None else os.environ.get(env, default)


def _settings(config: pytest.Config) -> Settings | None:
    """The settings given, None without a kubeconfig."""
    kubeconfig = _option(config, "kubeconfig")
    if not kubeconfig:
        return None
    return Settings(
        kubeconfig=parse_kubeconfig(kubeconfig),
        context=_option(config, "context"),
        node_exec=parse_node_exec(_option(config, "node-exec")),
        driver_name=_option(config, "driver-name"),
        driver_namespace=_option(config, "driver-namespace"),
        driver_selector=_option(config, "driver-selector"),
        demo_namespace=_option(config, "demo-namespace"),
        deployment=_option(config, "deployment"),
        file_dir=_option(config, "file-dir"),
        kill_node=_option(config, "kill-node"),
        timeout=parse_timeout(_option(config, "timeout")),
    )


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    given = pytestconfig.stash.get(_SETTINGS, None)
    if given is None:
        pytest.skip(
            "no multi-node cluster given (--multinode-kubeconfig or DRA_MULTINODE_KUBECONFIG); "
            "molecule/shared/multinode_tests.yml runs these tests against molecule's kind cluster"
        )
    return given


@pytest.fixture(scope="session")
def kube(settings: Settings) -> Iterator[KubeApi]:
    api = KubeApi(settings)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def shell(settings: Settings) -> NodeShell:
    return NodeShell(settings)


@pytest.fixture(scope="session")
def demo(settings: Settings, kube: KubeApi, shell: NodeShell) -> DemoReader:
    return DemoReader(settings, kube, shell)


@pytest.fixture
def report_figure(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """report_figure(text): printed in the run's summary, even when the test passes."""

    def report(text: str) -> None:
        pytestconfig.stash[_FIGURES].append(text)
        print(text)

    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    figures = config.stash.get(_FIGURES, [])
    if figures:
        terminalreporter.write_sep("=", "multi-node figures")
        for line in figures:
            terminalreporter.write_line(line)
