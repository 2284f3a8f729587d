"""kind on podman with the locally built node image: its configuration and its life cycle.

Docker cannot start kind's privileged node containers on the machines this
project targets; podman can, once its default ulimits are off (a
containers.conf with `default_ulimits = []`, named by CONTAINERS_CONF). kind
itself is built from the Go module proxy into the binary cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcluster.binaries import BuildError, GoModuleBuild, default_cache_dir, ensure_built
from localcluster.images import BUSYBOX_BINARY, build_busybox_archive
from localcluster.kind_node_image import NodeImageError, build_node_image
from localcluster.versions import KubernetesVersion

KIND_VERSION = "v0.33.0"
DEFAULT_WORKERS = 2

# What a cluster of the node image built here needs from kubeadm (see
# cluster_config). Also handed to the dra_cluster role by `prepare`, so the
# role's kind config and this module's never differ.
KUBEADM_CONFIG_PATCHES = (
    "kind: KubeletConfiguration\nfailCgroupV1: false\n",
    "kind: InitConfiguration\n"
    "skipPhases:\n"
    "  - addon/coredns\n"
    "nodeRegistration:\n"
    "  ignorePreflightErrors:\n"
    "    - SystemVerification\n"
    "    - ImagePull\n",
    "kind: JoinConfiguration\n"
    "nodeRegistration:\n"
    "  ignorePreflightErrors:\n"
    "    - SystemVerification\n",
)


class KindError(RuntimeError):
    """kind or podman failed; the message carries their output."""


def kind_build(version: str = KIND_VERSION) -> GoModuleBuild:
    # The same cache entry scripts/kind-prereqs fills with `go install`.
    return GoModuleBuild(
        name="kind", module="sigs.k8s.io/kind", version=version, packages=("sigs.k8s.io/kind",)
    )


def ensure_kind(
    cache: Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
) -> Path:
    return ensure_built(kind_build(), cache, log) / "kind"


# podman's containers.conf for kind's nodes: without its default ulimits, which
# runc cannot apply where the bounding set lacks CAP_SYS_RESOURCE ("error
# setting rlimit type 7").
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"


def podman_containers_conf(cache: Path | None = None) -> Path:
    """A containers.conf without podman's default ulimits (runc cannot apply them here)."""
    path = (cache or default_cache_dir()) / "podman" / "containers.conf"
    if not path.is_file() or path.read_text() != CONTAINERS_CONF:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(CONTAINERS_CONF)
        partial.rename(path)
    return path


def podman_environment(cache: Path | None = None) -> dict[str, str]:
    """The environment kind and podman need here, on top of this process's own."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(podman_containers_conf(cache)),
        "KIND_EXPERIMENTAL_PROVIDER": "podman",
    }


def privileged_container_problem(image: str, env: dict[str, str]) -> str | None:
    """Why podman cannot run a privileged container of `image` here, or None if it can."""
    try:
        result = subprocess.run(
            ["podman", "run", "--rm", "--privileged", "--entrypoint", "/bin/true", image],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        return "podman is not installed (scripts/kind-prereqs installs it)"
    if result.returncode != 0:
        return f"`podman run --privileged` fails: {result.stderr.strip()}"
    return None


def podman_problem(busybox: Path = BUSYBOX_BINARY) -> str | None:
    """Why podman cannot run kind's node containers here, or None if it can.

    Read-only and quick, for choosing a provider before anything is built: a
    privileged container is started with podman's settings for kind (the
    containers.conf above, in a temporary file) from a throw-away root of one
    static busybox, so no image is needed or left behind.
    """
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/kind-prereqs installs it)"
    if os.geteuid() != 0:
        return "podman runs rootless for this user: kind's nodes need rootful podman (run as root)"
    if not busybox.is_file():
        return f"{busybox} is missing (Debian's busybox-static), needed to probe podman"
    with tempfile.TemporaryDirectory(prefix="dra-podman-probe-") as workdir:
        conf = Path(workdir) / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        rootfs = Path(workdir) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        try:
            result = subprocess.run(
                [
                    "podman",
                    "run",
                    "--rm",
                    "--privileged",
                    "--network",
                    "none",
                    "--rootfs",
                    str(rootfs),
                    "/bin/busybox",
                    "true",
                ],
                env={**os.environ, "CONTAINERS_CONF": str(conf)},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "`podman run --privileged` did not finish within 120 s"
    if result.returncode != 0:
        return f"`podman run --privileged` fails: {result.stderr.strip()}"
    return None


def cluster_config(name: str, node_image: str, workers: int = DEFAULT_WORKERS) -> str:
    """kind's configuration for one control plane and `workers` workers of `node_image`.

    - kindnetd would have to be pulled: no default CNI; the node image sets up a
      bridge per node from its pod CIDR instead.
    - The kubelet (1.35 and later) refuses cgroup v1 unless told otherwise, and
      hosts like ours are cgroup v1; kubeadm's preflight check then fails its
      SystemVerification on purpose ("you must also explicitly skip this validation").
    - CoreDNS cannot be pulled either, and nothing here needs cluster DNS.
    - kubeadm's preflight would pull the control plane's images; they come from
      the node image instead (imported at boot, before the kubelet starts), and
      a pull can only fail here.
    """
    if workers < 0:
        raise KindError(f"a kind cluster cannot have {workers} workers")
    nodes = "".join(
        f"  - role: {role}\n    image: {node_image}\n"
        for role in ["control-plane", *["worker"] * workers]
    )
    patches = "".join(
        "  - |\n" + "".join(f"    {line}\n" for line in patch.splitlines())
        for patch in KUBEADM_CONFIG_PATCHES
    )
    return (
        "kind: Cluster\n"
        "apiVersion: kind.x-k8s.io/v1alpha4\n"
        f"name: {name}\n"
        "networking:\n"
        "  disableDefaultCNI: true\n"
        "nodes:\n"
        f"{nodes}"
        "kubeadmConfigPatches:\n"
        f"{patches}"
    )


@dataclass(frozen=True)
class KindCluster:
    """One kind cluster, driven through the kind binary on podman."""

    name: str
    kind: Path
    env: dict[str, str]
    kubeconfig: Path

    def _kind(self, *args: str, stdin: str | None = None, timeout: float = 900) -> str:
        result = subprocess.run(
            [str(self.kind), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            raise KindError(f"kind {' '.join(args[:2])} failed:\n{tail}")
        return result.stdout

    def create(self, config: str) -> str:
        return self._kind(
            "create",
            "cluster",
            f"--name={self.name}",
            f"--kubeconfig={self.kubeconfig}",
            "--config=-",
            "--retain",  # keep failed nodes for their logs; delete() removes them
            stdin=config,
        )

    def delete(self) -> str:
        return self._kind(
            "delete", "cluster", f"--name={self.name}", f"--kubeconfig={self.kubeconfig}"
        )

    def load_image_archive(self, archive: Path) -> str:
        return self._kind("load", "image-archive", str(archive), f"--name={self.name}")

    def node_names(self) -> list[str]:
        return self._kind("get", "nodes", f"--name={self.name}").split()

    def diagnostics(self, lines: int = 15) -> str:
        """The tail of each node's journal for the units that make a node work."""
        report: list[str] = []
        for node in self.node_names():
            for unit in ("kubelet", "containerd", "preload-images", "pod-network"):
                journal = subprocess.run(
                    [
                        "podman",
                        "exec",
                        node,
                        "journalctl",
                        "--no-pager",
                        "-n",
                        str(lines),
                        "-u",
                        unit,
                    ],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                report.append(f"--- {node}: {unit}\n{journal.stdout}{journal.stderr}")
        return "\n".join(report)


# ---- The dra_cluster role's entry: `python -m localcluster.kind_cluster` ----


def kind_path(cache: Path | None = None) -> Path:
    """Where ensure_kind puts kind (whether or not it is built yet)."""
    return (cache or default_cache_dir()) / "bin" / kind_build().key / "kind"


def containers_conf_path(cache: Path | None = None) -> Path:
    """Where podman_containers_conf writes its file (whether or not it exists yet)."""
    return (cache or default_cache_dir()) / "podman" / "containers.conf"


def paths() -> dict[str, object]:
    """Read-only: where kind and podman's containers.conf are, whether kind is built, and
    what a kind config for the node image built here must hold."""
    kind = kind_path()
    return {
        "kind": str(kind),
        "kind_present": kind.is_file(),
        "containers_conf": str(containers_conf_path()),
        # What the kind config needs for the node image built here (cluster_config).
        "disable_default_cni": True,
        "kubeadm_config_patches": list(KUBEADM_CONFIG_PATCHES),
    }


def prepare(
    version: KubernetesVersion,
    node_image: str,
    busybox_archive: Path,
    podman_probed: bool = False,
) -> dict[str, object]:
    """What a kind cluster on podman needs here, built or found; `changed` if anything was made.

    kind (built once), the containers.conf, the node image (unless one is
    given), a proof that podman starts a privileged container of it, and the
    busybox archive the nodes cannot pull.

    podman_probed: the caller has just seen `probe` pass (podman_problem), a
    privileged container started with kind's settings. The proof is then not
    repeated: starting a container takes a second or more, on every run. A
    node image that cannot start still fails, at `kind create cluster`.
    """
    kind_was_present = kind_path().is_file()
    kind = ensure_kind()
    conf_before = containers_conf_path().read_text() if containers_conf_path().is_file() else None
    containers_conf = podman_containers_conf()
    built = False
    if not node_image:
        image = build_node_image(version)
        node_image, built = image.reference, image.built
    if not podman_probed:
        problem = privileged_container_problem(node_image, podman_environment())
        if problem is not None:
            raise KindError(f"kind's node containers cannot run here: {problem}")
    archive_was_present = busybox_archive.is_file()
    if not archive_was_present:
        busybox_archive.parent.mkdir(parents=True, exist_ok=True)
        build_busybox_archive(busybox_archive)
    return {
        "kind": str(kind),
        "containers_conf": str(containers_conf),
        "node_image": node_image,
        "node_image_built": built,
        "busybox_archive": str(busybox_archive),
        "changed": built
        or not kind_was_present
        or conf_before != containers_conf.read_text()
        or not archive_was_present,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.kind_cluster",
        description="kind on podman here: what the dra_cluster role needs, as JSON on stdout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("paths", help="where kind and podman's containers.conf are (read-only)")
    commands.add_parser(
        "probe", help="whether podman can run kind's node containers here (changes nothing)"
    )
    prepare_parser = commands.add_parser(
        "prepare", help="build or find kind, the containers.conf, the node image, busybox"
    )
    prepare_parser.add_argument("--kubernetes-version", default="v1.37.2")
    prepare_parser.add_argument(
        "--node-image", default="", help="use this node image instead of the one built here"
    )
    prepare_parser.add_argument("--busybox-archive", type=Path, required=True)
    prepare_parser.add_argument(
        "--podman-probed",
        action="store_true",
        help="`probe` has just passed: start no privileged container to prove it again",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "paths":
            result = paths()
        elif args.command == "probe":
            problem = podman_problem()
            result = {"runtime": "podman", "ok": problem is None, "problem": problem or ""}
        else:
            result = prepare(
                KubernetesVersion.parse(args.kubernetes_version),
                args.node_image,
                args.busybox_archive,
                podman_probed=args.podman_probed,
            )
    except (KindError, NodeImageError, BuildError, OSError, ValueError) as error:
        print(f"kind_cluster {args.command}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
