"""The dra_cluster role's kind config for kind on podman, with the node image built here.

That node image pulls nothing and runs on cgroup v1 hosts, so its clusters need
what localcluster.kind_cluster.cluster_config writes (no default CNI, kubeadm
patches). The role gets those settings from `python -m localcluster.kind_cluster
paths`; here the role's rendering is decoded with kind's own types and compared
with cluster_config's, so that the two can never drift apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

NODE_IMAGE = "localhost/dra-kind-node:v1.37.2-0123456789ab"


def module_cluster_config(name: str, node_image: str, workers: int) -> Any:
    """localcluster.kind_cluster.cluster_config's YAML, parsed (the package's own Python)."""
    code = (
        "import sys; from localcluster.kind_cluster import cluster_config; "
        "print(cluster_config(sys.argv[1], sys.argv[2], int(sys.argv[3])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, name, node_image, str(workers)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return yaml.safe_load(result.stdout)


def kind_cluster_paths(env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "localcluster.kind_cluster", "paths"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    paths: dict[str, Any] = json.loads(result.stdout)
    return paths


def test_paths_is_read_only_and_names_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    paths = kind_cluster_paths(env={"LOCALCLUSTER_CACHE": str(cache), "PATH": "/usr/bin:/bin"})
    assert paths["kind"] == str(cache / "bin" / "kind-v0.33.0" / "kind")
    assert paths["kind_present"] is False
    assert paths["containers_conf"] == str(cache / "podman" / "containers.conf")
    assert not cache.exists(), "paths must not create anything"


def test_podman_config_matches_cluster_config_and_is_valid_for_kind(
    run_playbook: Any, kind_config_check: Path, tmp_path: Path
) -> None:
    config = tmp_path / "kind-podman.yaml"
    variables = {
        "dra_cluster_kind_config_path": str(config),
        "dra_cluster_kind_runtime": "podman",
        "dra_cluster_kind_name": "dra-podman",
        "__dra_cluster_kind_podman": {**kind_cluster_paths(), "node_image": NODE_IMAGE},
    }
    result = run_playbook(
        "tests/ansible/render_kind_config.yml", "--extra-vars", json.dumps(variables)
    )
    assert result.returncode == 0, result.output

    checked = subprocess.run(
        [str(kind_config_check), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr

    rendered = yaml.safe_load(config.read_text())
    expected = module_cluster_config("dra-podman", NODE_IMAGE, workers=2)
    for key in ("name", "networking", "kubeadmConfigPatches", "nodes"):
        assert rendered[key] == expected[key], key
    # The role's own settings stay on top (CDI for containerd 1.7 images).
    assert "enable_cdi = true" in rendered["containerdConfigPatches"][0]
