"""Pinned versions of everything the local cluster runs, and their validation.

Kubernetes is a variable (1.34 or later, because `resource.k8s.io/v1` and the
kubelet's `v1.DRAPlugin` service first shipped in 1.34); the rest is pinned to
releases known to work with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_KUBERNETES_VERSION = "v1.37.2"
MIN_KUBERNETES_MINOR = 34

# etcd 3.6 is the series Kubernetes 1.34+ is tested with; containerd v2 has CDI on by default.
ETCD_VERSION = "v3.6.16"
CONTAINERD_VERSION = "v2.4.2"
# crictl, for kind nodes: the cri-tools release that goes with Kubernetes 1.37.
CRI_TOOLS_VERSION = "v1.37.0"

# Image names the kubelet, containerd and the manifests refer to. They are built
# locally (no registry is reachable) and imported into containerd under these names.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
BUSYBOX_IMAGE = "docker.io/library/busybox:1.35"

_SEMVER_TAG = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")


class VersionError(ValueError):
    """A requested version is malformed or unsupported."""


@dataclass(frozen=True)
class KubernetesVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> KubernetesVersion:
        match = _SEMVER_TAG.match(text)
        if match is None:
            raise VersionError(
                f"kubernetes version {text!r} is not a release tag "
                f"like {DEFAULT_KUBERNETES_VERSION}"
            )
        version = cls(int(match["major"]), int(match["minor"]), int(match["patch"]))
        if version.major != 1:
            raise VersionError(f"kubernetes version {text} is not a 1.x release")
        if version.minor < MIN_KUBERNETES_MINOR:
            raise VersionError(
                f"kubernetes version {text} is too old: DRA's resource.k8s.io/v1 needs "
                f"v1.{MIN_KUBERNETES_MINOR}.0 or later"
            )
        return version

    @property
    def tag(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def staging_tag(self) -> str:
        """Version of the k8s.io/* staging modules released with this Kubernetes."""
        return f"v0.{self.minor}.{self.patch}"
