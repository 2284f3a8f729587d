"""The local node runs ordinary pods, and they reach the API server like pods do."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster import featuregates
from localcluster.cluster import ClusterError, LocalCluster
from localcluster.images import BUSYBOX_BINARY, LayerEntry, archive_images, write_image_archive
from localcluster.pytest_plugin import ClusterHandle

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def _cli(local_cluster: ClusterHandle) -> list[str]:
    """The `localcluster` command line that addresses the test cluster."""
    cluster = local_cluster.cluster
    return [
        sys.executable,
        "-m",
        "localcluster",
        f"--run-dir={local_cluster.run_dir}",
        f"--kubernetes-version={cluster.version.tag}",
        f"--feature-gates={featuregates.render(cluster.feature_gates)}",
    ]


def test_node_is_ready_and_reports_the_built_versions(local_cluster: ClusterHandle) -> None:
    status = local_cluster.get("node", local_cluster.node_name)["status"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True"
    assert status["nodeInfo"]["kubeletVersion"] == local_cluster.cluster.version.tag
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")


def test_a_pod_runs_and_its_log_comes_back(run_pod: Callable[[str], tuple[str, str]]) -> None:
    token = uuid.uuid4().hex
    phase, log = run_pod(f"echo {token}")
    assert phase == "Succeeded"
    assert log.strip() == token


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    run_pod: Callable[[str], tuple[str, str]],
) -> None:
    # busybox has no TLS client that the API server accepts, so speak plain HTTP
    # to the TLS port: the API server's own answer ("Client sent an HTTP request
    # to an HTTPS server") proves kube-proxy translated the Service address and
    # the packets came back.
    script = (
        'echo "service=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; '
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' "
        "| nc -w 10 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT; true"
    )
    phase, log = run_pod(script)
    assert phase == "Succeeded"
    assert "service=10.96.0.1:443" in log
    assert "Client sent an HTTP request to an HTTPS server" in log


def test_up_again_starts_nothing_and_the_cli_reports_it(local_cluster: ClusterHandle) -> None:
    cluster = local_cluster.cluster
    result = cluster.up(with_node=True)
    assert result.started == ()
    cli = _cli(local_cluster)
    up = subprocess.run([*cli, "up"], capture_output=True, text=True, check=True)
    assert up.stdout.splitlines()[-1] == "localcluster: up (already running)"
    status = json.loads(
        subprocess.run(
            [*cli, "status", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert status["running"]
    assert status["node_running"]
    assert status["node_name"] == local_cluster.node_name
    assert status["feature_gates"] == cluster.feature_gates
    assert all(component["running"] for component in status["components"].values())


def test_up_with_other_feature_gates_is_refused_and_leaves_the_cluster_running(
    local_cluster: ClusterHandle,
) -> None:
    running = local_cluster.cluster
    flipped = {"DRAConsumableCapacity": not running.feature_gates.get("DRAConsumableCapacity")}
    other = LocalCluster(
        run_dir=running.layout.root,
        kubernetes_version=running.version.tag,
        node_name=running.node_name,
        feature_gates={**running.feature_gates, **flipped},
    )
    with pytest.raises(ClusterError, match="run `localcluster down` before changing them"):
        other.up(with_node=True)
    assert running.status()["running"]
    assert running.status()["feature_gates"] == running.feature_gates


def test_an_imported_archive_runs_as_a_pod_and_importing_it_again_changes_nothing(
    local_cluster: ClusterHandle, run_image: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    reference = f"localcluster-test/echo:{token[:12]}"
    archive = write_image_archive(
        tmp_path / "echo.tar",
        reference,
        [LayerEntry("bin/busybox", content=BUSYBOX_BINARY.read_bytes())],
        entrypoint=["/bin/busybox", "echo"],
        command=[token],
    )
    stored = f"docker.io/{reference}"
    # image-ids: what the playbook asks before it exports and imports an
    # archive (the node holds the image when Docker's image ID is listed).
    ids = [*_cli(local_cluster), "image-ids", "--json", reference]
    before = json.loads(subprocess.run(ids, capture_output=True, text=True, check=True).stdout)
    assert before == {"command": "image-ids", "reference": reference, "ids": []}
    cli = [*_cli(local_cluster), "import-image", str(archive)]
    first = subprocess.run(cli, capture_output=True, text=True, check=True)
    assert first.stdout.splitlines() == [f"localcluster: imported {stored}"]
    after = json.loads(subprocess.run(ids, capture_output=True, text=True, check=True).stdout)
    assert after["ids"] == list(archive_images(archive).values())
    again = subprocess.run(cli, capture_output=True, text=True, check=True)
    assert again.stdout.splitlines() == [f"localcluster: already present {stored}"]
    # The kubelet finds it without a registry: it sits where the CRI looks.
    phase, log = run_image(reference)
    assert (phase, log.strip()) == ("Succeeded", token)


def test_an_archive_of_new_content_under_a_known_name_is_imported(
    local_cluster: ClusterHandle, run_image: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    # import-image skips reading an archive whose images the node holds
    # already: "holds" must mean the same image ID, not only the same name.
    reference = f"localcluster-test/echo:{uuid.uuid4().hex[:12]}"
    stored = f"docker.io/{reference}"
    cli = [*_cli(local_cluster), "import-image", "--json"]
    for token in (uuid.uuid4().hex, uuid.uuid4().hex):
        archive = write_image_archive(
            tmp_path / f"{token}.tar",
            reference,
            [LayerEntry("bin/busybox", content=BUSYBOX_BINARY.read_bytes())],
            entrypoint=["/bin/busybox", "echo"],
            command=[token],
        )
        for changed in (True, False):
            result = subprocess.run(
                [*cli, str(archive)], capture_output=True, text=True, check=True
            )
            images = json.loads(result.stdout)["images"]
            assert images == [{"reference": stored, "changed": changed}], token
        phase, log = run_image(reference)
        assert (phase, log.strip()) == ("Succeeded", token)


def test_importing_a_file_that_is_no_image_archive_fails_clearly(
    local_cluster: ClusterHandle, tmp_path: Path
) -> None:
    not_an_archive = tmp_path / "notes.txt"
    not_an_archive.write_text("not an image\n")
    result = subprocess.run(
        [*_cli(local_cluster), "import-image", str(not_an_archive)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"localcluster: error: {not_an_archive} is not a `docker save` archive"
    )
    assert "Traceback" not in result.stderr
    assert local_cluster.cluster.status()["node_running"]
