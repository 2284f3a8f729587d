"""The kind node image's pure parts: the kind configuration and the package file lists.

The image build itself, and kind on it, are exercised by test_kind_cluster.py.
"""

from __future__ import annotations

import io
import tarfile

import pytest
import yaml

from localcluster.kind_cluster import KindError, cluster_config
from localcluster.kind_node_image import _package_files


def test_cluster_config_has_one_control_plane_and_the_workers_on_the_node_image() -> None:
    config = yaml.safe_load(cluster_config("demo", "localhost/dra-kind-node:v1.37.2-abc", 2))
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == "demo"
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert {node["image"] for node in config["nodes"]} == {"localhost/dra-kind-node:v1.37.2-abc"}


def test_cluster_config_runs_on_cgroup_v1_without_pulled_cni_or_dns() -> None:
    config = yaml.safe_load(cluster_config("demo", "image", 0))
    assert config["networking"] == {"disableDefaultCNI": True}
    patches = [yaml.safe_load(patch) for patch in config["kubeadmConfigPatches"]]
    assert {"kind": "KubeletConfiguration", "failCgroupV1": False} in patches
    assert {
        "kind": "InitConfiguration",
        "skipPhases": ["addon/coredns"],
        "nodeRegistration": {"ignorePreflightErrors": ["SystemVerification", "ImagePull"]},
    } in patches
    assert {
        "kind": "JoinConfiguration",
        "nodeRegistration": {"ignorePreflightErrors": ["SystemVerification"]},
    } in patches
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]


def test_cluster_config_refuses_a_negative_worker_count() -> None:
    with pytest.raises(KindError, match="-1 workers"):
        cluster_config("demo", "image", -1)


def _tar_with(files: dict[str, bytes]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


def test_package_files_follow_merged_usr_and_multiarch_list_names() -> None:
    base = _tar_with(
        {
            "./var/lib/dpkg/info/iptables.list": b"/.\n/usr/sbin/xtables-nft-multi\n",
            "./var/lib/dpkg/info/libc6:amd64.list": b"/lib/x86_64-linux-gnu/libc.so.6\n"
            b"/lib64/ld-linux-x86-64.so.2\n",
            "./var/lib/dpkg/info/bash.list": b"/bin/bash\n",
        }
    )
    files = _package_files(base, ("iptables", "libc6"))
    assert files >= {
        "usr/sbin/xtables-nft-multi",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib64/ld-linux-x86-64.so.2",
    }
    assert "usr/bin/bash" not in files  # a package that was not asked for
