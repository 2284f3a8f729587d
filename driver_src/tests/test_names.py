from __future__ import annotations

import pytest

from dra_file_driver import names


@pytest.mark.parametrize("name", ["a", "web-0", "app.v1", "x" * 253, "0abc"])
def test_valid_pod_names(name: str) -> None:
    assert names.dns1123_subdomain_error(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("pod\nevil", "lower case"),
        ("pod\n", "lower case"),
        ("a/b", "lower case"),
        ("../etc", "lower case"),
        ("a..b", "lower case"),
        ("Pod", "lower case"),
        ("-pod", "lower case"),
        ("pod-", "lower case"),
        ("x" * 254, "253"),
    ],
)
def test_invalid_pod_names(name: str, reason: str) -> None:
    problem = names.dns1123_subdomain_error(name)
    assert problem is not None
    assert reason in problem


def test_label_rejects_dots_and_long_names() -> None:
    assert names.dns1123_label_error("file1") is None
    assert names.dns1123_label_error("a.b") is not None
    assert names.dns1123_label_error("x" * 64) is not None


def test_driver_name_limited_to_63() -> None:
    assert names.driver_name_error("file.dra.example.com") is None
    assert names.driver_name_error("a" * 64) == "must be no more than 63 characters"
    assert names.driver_name_error("File.Example.com") is not None


@pytest.mark.parametrize("uid", ["3f2a7e5c-1b2d-4e6f-8a9b-0c1d2e3f4a5b", "abc", "A1"])
def test_valid_uids(uid: str) -> None:
    assert names.uid_error(uid) is None


@pytest.mark.parametrize("uid", ["", "../x", "a/b", "a b", "-a", "a\n", "x" * 129])
def test_invalid_uids(uid: str) -> None:
    assert names.uid_error(uid) is not None
