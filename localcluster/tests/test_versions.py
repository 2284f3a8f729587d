from __future__ import annotations

import pytest

from localcluster.versions import KubernetesVersion, VersionError


def test_release_tags_parse() -> None:
    version = KubernetesVersion.parse("v1.34.0")
    assert (version.minor, version.patch, version.tag) == (34, 0, "v1.34.0")
    assert version.staging_tag == "v0.34.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.37.2", "not a release tag"),
        ("v1.37", "not a release tag"),
        ("v1.37.0-rc.1", "not a release tag"),
        ("v1.33.5", "too old"),
        ("v2.0.0", "not a 1.x release"),
    ],
)
def test_bad_versions_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(VersionError, match=message):
        KubernetesVersion.parse(text)
