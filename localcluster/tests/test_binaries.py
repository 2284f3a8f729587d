"""How the wrapper Go modules are written for each upstream module."""

from __future__ import annotations

import pytest

from localcluster.binaries import (
    BuildError,
    containerd_build,
    etcd_build,
    kubernetes_build,
    local_replacements,
    render_go_mod,
    required_modules,
)
from localcluster.versions import KubernetesVersion

# Trimmed copies of the upstream go.mod files' relevant parts.
KUBERNETES_GO_MOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
	k8s.io/kubelet v0.0.0 // indirect
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/kubelet => ./staging/src/k8s.io/kubelet
	k8s.io/sample-apiserver => ./staging/src/k8s.io/sample-apiserver
)
"""

ETCD_GO_MOD = """\
module go.etcd.io/etcd/server/v3

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 v3.6.16
	go.etcd.io/etcd/client/v3 v3.6.16
)

replace (
	go.etcd.io/etcd/api/v3 => ../api
	go.etcd.io/etcd/client/v3 => ../client/v3
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_kubernetes_staging_modules_are_replaced_by_their_published_versions() -> None:
    build = kubernetes_build(KubernetesVersion.parse("v1.37.2"))
    go_mod = render_go_mod(build, KUBERNETES_GO_MOD, "1.26.8")
    assert "require k8s.io/kubernetes v1.37.2" in go_mod
    assert "\tk8s.io/api => k8s.io/api v0.37.2\n" in go_mod
    assert "\tk8s.io/kubelet => k8s.io/kubelet v0.37.2\n" in go_mod
    # Not required upstream: nothing to pin.
    assert "sample-apiserver" not in go_mod
    assert "go 1.26.8" in go_mod


def test_etcd_siblings_get_the_same_version_and_placeholders_are_left_alone() -> None:
    go_mod = render_go_mod(etcd_build("v3.6.16"), ETCD_GO_MOD, "1.26.8")
    assert "\tgo.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.16\n" in go_mod
    assert "\tgo.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v3.6.16\n" in go_mod
    assert "FORBIDDEN" not in go_mod
    assert "go.etcd.io/etcd =>" not in go_mod


def test_a_local_replacement_without_a_known_version_is_an_error() -> None:
    with pytest.raises(BuildError, match=r"k8s\.io/api"):
        render_go_mod(containerd_build(), KUBERNETES_GO_MOD, "1.26.8")


def test_go_mod_parsing() -> None:
    assert required_modules(KUBERNETES_GO_MOD) == {
        "github.com/blang/semver/v4",
        "k8s.io/api",
        "k8s.io/kubelet",
    }
    assert local_replacements(ETCD_GO_MOD) == [
        "go.etcd.io/etcd/api/v3",
        "go.etcd.io/etcd/client/v3",
        "go.etcd.io/etcd",
    ]


def test_kubernetes_binaries_carry_their_release_version() -> None:
    build = kubernetes_build(KubernetesVersion.parse("v1.34.3"))
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.3" in build.ldflags
    assert "-X k8s.io/component-base/version.gitMinor=34" in build.ldflags
    assert build.key == "kubernetes-v1.34.3"
    assert {p.rsplit("/", 1)[1] for p in build.packages} == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
    }
