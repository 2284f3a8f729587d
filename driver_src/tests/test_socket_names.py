"""Socket names of one driver instance: fixed, per pod UID, and the hashed fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dra_file_driver import socket_names
from dra_file_driver.socket_names import dra_socket, registration_socket
from dra_file_driver.unix_server import MAX_SOCKET_PATH

REGISTRY = Path("/var/lib/kubelet/plugins_registry")
PLUGINS = Path("/var/lib/kubelet/plugins")
DRIVER = "file.dra.example.com"
UID = "ad4af911-5bcd-47c5-a554-f35cea869472"
OTHER_UID = "11111111-2222-3333-4444-555555555555"


def test_without_pod_uid_the_names_are_fixed() -> None:
    assert registration_socket(REGISTRY, DRIVER, None) == REGISTRY / f"{DRIVER}-reg.sock"
    assert dra_socket(PLUGINS / DRIVER, None) == PLUGINS / DRIVER / "dra.sock"


def test_the_full_uid_is_used_where_it_fits() -> None:
    assert registration_socket(REGISTRY, DRIVER, UID) == REGISTRY / f"{DRIVER}-{UID}-reg.sock"
    assert dra_socket(PLUGINS / DRIVER, UID) == PLUGINS / DRIVER / f"dra-{UID}.sock"


def test_a_longer_driver_name_falls_back_to_a_hash_of_the_uid() -> None:
    driver = "a" * 18 + ".example.com"  # the full form would be 110 bytes
    path = registration_socket(REGISTRY, driver, UID)
    assert len(str(path)) <= MAX_SOCKET_PATH
    assert path.name.startswith(f"{driver}-")
    assert path.name.endswith("-reg.sock")
    assert UID not in path.name
    assert len(path.name) == len(driver) + len("-") + 12 + len("-reg.sock")


def test_a_driver_name_too_long_even_for_that_is_hashed_into_the_name() -> None:
    driver = "d" * 63
    path = registration_socket(REGISTRY, driver, UID)
    assert len(str(path)) <= MAX_SOCKET_PATH
    assert driver not in path.name
    assert path.name.startswith("dra-")
    assert path.name.endswith("-reg.sock")
    # Two drivers share the registry directory: their hashed names differ.
    assert registration_socket(REGISTRY, "e" * 63, UID) != path


def test_a_long_plugin_directory_falls_back_to_a_hashed_dra_socket() -> None:
    plugin_dir = Path("/var/lib/kubelet/plugins") / ("p" * 50)
    path = dra_socket(plugin_dir, UID)
    assert len(str(path)) <= MAX_SOCKET_PATH
    assert path.parent == plugin_dir
    assert path.name.startswith("dra-")
    assert UID not in path.name


@pytest.mark.parametrize(
    "name_of",
    [
        lambda uid: registration_socket(REGISTRY, DRIVER, uid),
        lambda uid: registration_socket(REGISTRY, "a" * 18 + ".example.com", uid),
        lambda uid: registration_socket(REGISTRY, "d" * 63, uid),
        lambda uid: dra_socket(PLUGINS / DRIVER, uid),
        lambda uid: dra_socket(PLUGINS / ("p" * 50), uid),
    ],
    ids=["full", "hashed-uid", "hashed-driver-and-uid", "dra-full", "dra-hashed"],
)
def test_names_are_stable_per_pod_and_distinct_between_pods(
    name_of: Callable[[str | None], Path],
) -> None:
    # Stable: a restarted container of the same pod replaces its own stale
    # socket. Distinct: the other pod's socket is never touched.
    assert name_of(UID) == name_of(UID)
    assert name_of(UID) != name_of(OTHER_UID)
    assert name_of(UID) != name_of(None)


def test_a_directory_that_leaves_no_room_gives_the_shortest_name_for_config_to_reject() -> None:
    path = registration_socket(Path("/" + "r" * 99), DRIVER, UID)
    assert path.name.startswith("dra-")
    assert socket_names.too_long(path)
