from __future__ import annotations

from pathlib import Path

import pytest

from dra_file_driver import config
from dra_file_driver.config import ConfigError


def test_defaults() -> None:
    cfg = config.parse([], {"NODE_NAME": "node-a"})
    assert cfg.driver_name == "file.dra.example.com"
    assert cfg.node_name == "node-a"
    assert cfg.pod_uid is None
    assert cfg.kubeconfig is None
    assert cfg.registry_dir == Path("/var/lib/kubelet/plugins_registry")
    assert cfg.plugin_dir == Path("/var/lib/kubelet/plugins/file.dra.example.com")
    assert cfg.cdi_dir == Path("/var/run/cdi")
    assert cfg.file_dir == Path("/etc/dra")
    assert cfg.file_count == 1
    assert cfg.shared is False
    assert cfg.metrics_port is None
    assert cfg.health_port is None
    assert (cfg.log_format, cfg.log_level) == ("text", "info")
    assert cfg.dra_socket == Path("/var/lib/kubelet/plugins/file.dra.example.com/dra.sock")
    assert cfg.registration_socket == Path(
        "/var/lib/kubelet/plugins_registry/file.dra.example.com-reg.sock"
    )


def test_plugin_dir_default_follows_driver_name() -> None:
    cfg = config.parse(["--driver-name", "x.example.com", "--node-name", "n"], {})
    assert cfg.plugin_dir == Path("/var/lib/kubelet/plugins/x.example.com")


def test_every_flag_reads_its_environment_variable(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    env = {
        "DRA_DRIVER_NAME": "env.example.com",
        "NODE_NAME": "node-env",
        "POD_UID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "KUBECONFIG": str(kubeconfig),
        "DRA_REGISTRY_DIR": "/r",
        "DRA_PLUGIN_DIR": "/p",
        "DRA_CDI_DIR": "/c",
        "DRA_FILE_DIR": "/f",
        "DRA_FILE_COUNT": "3",
        "DRA_SHARED": "true",
        "DRA_METRICS_PORT": "9100",
        "DRA_HEALTH_PORT": "9101",
        "DRA_LOG_FORMAT": "json",
        "DRA_LOG_LEVEL": "DEBUG",
    }
    assert set(env) == set(config.ENV.values())
    cfg = config.parse([], env)
    assert cfg == config.Config(
        driver_name="env.example.com",
        node_name="node-env",
        pod_uid="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        kubeconfig=kubeconfig,
        registry_dir=Path("/r"),
        plugin_dir=Path("/p"),
        cdi_dir=Path("/c"),
        file_dir=Path("/f"),
        file_count=3,
        shared=True,
        metrics_port=9100,
        health_port=9101,
        log_format="json",
        log_level="debug",
    )


def test_flags_win_over_environment() -> None:
    cfg = config.parse(
        ["--node-name", "flag-node", "--file-count", "2", "--no-shared"],
        {"NODE_NAME": "env-node", "DRA_FILE_COUNT": "5", "DRA_SHARED": "1"},
    )
    assert (cfg.node_name, cfg.file_count, cfg.shared) == ("flag-node", 2, False)


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        ([], {}, "--node-name (NODE_NAME): is required"),
        (["--node-name", "Bad_Node"], {}, "--node-name (NODE_NAME): not a valid node name"),
        (["--driver-name", "no_underscores"], {"NODE_NAME": "n"}, "--driver-name"),
        ([], {"NODE_NAME": "n", "DRA_FILE_COUNT": "many"}, "--file-count (DRA_FILE_COUNT)"),
        (["--file-count", "0"], {"NODE_NAME": "n"}, "--file-count"),
        (["--file-count", "1025"], {"NODE_NAME": "n"}, "--file-count"),
        ([], {"NODE_NAME": "n", "DRA_SHARED": "maybe"}, "--shared (DRA_SHARED)"),
        (["--metrics-port", "70000"], {"NODE_NAME": "n"}, "--metrics-port"),
        (["--health-port", "x"], {"NODE_NAME": "n"}, "--health-port"),
        (["--health-port", "9000", "--metrics-port", "9000"], {"NODE_NAME": "n"}, "--health-port"),
        (["--log-format", "xml"], {"NODE_NAME": "n"}, "--log-format"),
        (["--log-level", "loud"], {"NODE_NAME": "n"}, "--log-level"),
        (["--pod-uid", "../escape"], {"NODE_NAME": "n"}, "--pod-uid (POD_UID): not a valid UID"),
        ([], {"NODE_NAME": "n", "POD_UID": "a/b"}, "--pod-uid (POD_UID): not a valid UID"),
        (["--cdi-dir", "relative"], {"NODE_NAME": "n"}, "--cdi-dir (DRA_CDI_DIR)"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], {"NODE_NAME": "n"}, "--kubeconfig"),
        (["--registry-dir", "/" + "r" * 100], {"NODE_NAME": "n"}, "--registry-dir"),
        (["--plugin-dir", "/" + "p" * 100], {"NODE_NAME": "n"}, "--plugin-dir"),
        (["--file-dir", "/" + "f" * 60], {"NODE_NAME": "n"}, "--file-dir"),
    ],
)
def test_invalid_settings_name_the_flag(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(argv, env)
    assert str(info.value).startswith(names)


POD_UID = "ad4af911-5bcd-47c5-a554-f35cea869472"


def test_pod_uid_puts_the_uid_into_both_socket_names() -> None:
    cfg = config.parse(["--node-name", "n"], {"POD_UID": POD_UID})
    assert cfg.registration_socket == Path(
        f"/var/lib/kubelet/plugins_registry/file.dra.example.com-{POD_UID}-reg.sock"
    )
    assert cfg.dra_socket == Path(
        f"/var/lib/kubelet/plugins/file.dra.example.com/dra-{POD_UID}.sock"
    )


def test_pod_uid_with_a_directory_too_long_for_any_socket_name_names_the_flag() -> None:
    # 100 bytes of directory leave no room even for the shortest hashed name.
    with pytest.raises(ConfigError) as info:
        config.parse(["--node-name", "n", "--registry-dir", "/" + "r" * 99], {"POD_UID": POD_UID})
    assert str(info.value).startswith("--registry-dir (DRA_REGISTRY_DIR): socket path")
