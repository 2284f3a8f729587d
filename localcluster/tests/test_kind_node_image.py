"""The kind node image's pure parts: the kind configuration, the package file
lists and the remembered digests of its input files.

The image build itself, and kind on it, are exercised by test_kind_cluster.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from localcluster.kind_cluster import KindError, cluster_config
from localcluster.kind_node_image import FileDigests, _package_files


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


def test_file_digests_are_remembered_until_the_file_changes(tmp_path: Path) -> None:
    store = tmp_path / "cache" / "digests.json"
    binary = tmp_path / "kubelet"
    binary.write_bytes(b"one")
    first = FileDigests(store)
    assert first.digest(binary) == hashlib.sha256(b"one").hexdigest()
    first.save()
    remembered = json.loads(store.read_text())[str(binary)]
    assert remembered["sha256"] == hashlib.sha256(b"one").hexdigest()

    # A later run takes the remembered digest while size, mtime and inode
    # stay: a planted digest comes back, so the file was not read again.
    planted = json.loads(store.read_text())
    planted[str(binary)]["sha256"] = "remembered"
    store.write_text(json.dumps(planted))
    assert FileDigests(store).digest(binary) == "remembered"

    # New content of the same size (a new mtime) is read again.
    binary.write_bytes(b"two")
    stat = binary.stat()
    os.utime(binary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = FileDigests(store)
    assert again.digest(binary) == hashlib.sha256(b"two").hexdigest()
    again.save()
    assert FileDigests(store).digest(binary) == hashlib.sha256(b"two").hexdigest()


def test_an_unreadable_digest_store_only_costs_a_new_hashing(tmp_path: Path) -> None:
    store = tmp_path / "digests.json"
    store.write_text("{not json")
    binary = tmp_path / "kubeadm"
    binary.write_bytes(b"x")
    digests = FileDigests(store)
    assert digests.digest(binary) == hashlib.sha256(b"x").hexdigest()
    digests.save()
    assert str(binary) in json.loads(store.read_text())
