"""`kind_cluster prepare`: the privileged-container proof, and when it is skipped.

`prepare` proves that podman starts a privileged container of the node image,
unless the caller says that `probe` has just passed (--podman-probed): the
dra_cluster role probes podman a moment before, and each container start
costs a second or more on every run.

The CLI runs for real, with a cache of its own (LOCALCLUSTER_CACHE) holding a
stand-in kind binary that is never run, a node image given by name (so nothing
is built) and a stand-in `podman` on PATH (a fake, named so) that records its
arguments and fails as runc does where podman cannot start privileged
containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster.images import BUSYBOX_BINARY
from localcluster.kind_cluster import kind_build

NODE_IMAGE = "localhost/dra-kind-node:v1.37.2-test"

pytestmark = pytest.mark.skipif(
    not BUSYBOX_BINARY.is_file(), reason=f"{BUSYBOX_BINARY} is missing (busybox-static)"
)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    cache = tmp_path / "cache"
    fake_kind = cache / "bin" / kind_build().key / "kind"  # a fake: prepare only finds it
    fake_kind.parent.mkdir(parents=True)
    fake_kind.write_text("#!/bin/sh\nexit 99\n")
    fake_kind.chmod(0o755)
    record = tmp_path / "podman-calls"
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake_podman = fake_bin / "podman"  # a fake: a podman whose runc cannot start it
    fake_podman.write_text(
        f'#!/bin/sh\necho "$@" >> {record}\n'
        "echo 'Error: runc: error setting rlimit type 7: operation not permitted' >&2\n"
        "exit 126\n"
    )
    fake_podman.chmod(0o755)
    return {"cache": cache, "bin": fake_bin, "record": record, "archive": tmp_path / "bb.tar"}


def _prepare(sandbox: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LOCALCLUSTER_CACHE": str(sandbox["cache"]),
        "PATH": f"{sandbox['bin']}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster.kind_cluster",
            "prepare",
            "--node-image",
            NODE_IMAGE,
            "--busybox-archive",
            str(sandbox["archive"]),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prepare_proves_a_privileged_container_and_names_its_failure(
    sandbox: dict[str, Path],
) -> None:
    result = _prepare(sandbox)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert (
        "kind_cluster prepare: kind's node containers cannot run here: "
        "`podman run --privileged` fails: Error: runc: error setting rlimit type 7"
    ) in result.stderr
    calls = sandbox["record"].read_text().splitlines()
    assert calls == [f"run --rm --privileged --entrypoint /bin/true {NODE_IMAGE}"]


def test_prepare_after_a_passed_probe_starts_no_container(sandbox: dict[str, Path]) -> None:
    first = _prepare(sandbox, "--podman-probed")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer["node_image"] == NODE_IMAGE
    assert answer["node_image_built"] is False
    assert answer["kind"] == str(sandbox["cache"] / "bin" / kind_build().key / "kind")
    assert Path(str(answer["busybox_archive"])).is_file()
    # The containers.conf and the busybox archive were made: a change.
    assert answer["changed"] is True

    again = _prepare(sandbox, "--podman-probed")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {**answer, "changed": False}
    assert not sandbox["record"].exists(), "podman was called"
