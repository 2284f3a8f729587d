"""`localcluster`: build, start, stop and inspect the local cluster.

`up`, `down`, `import-image`, `status` and `image-ids` take `--json`: stdout
is then one JSON object (for the changing commands with `changed` and what
they did; see the `*_report` functions), for automation such as the Ansible
role; progress stays on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from localcluster import featuregates
from localcluster.binaries import BINARY_SOURCES, BuildError
from localcluster.cluster import ClusterError, LocalCluster, UpResult
from localcluster.hoststate import HostStateError
from localcluster.images import ImageError
from localcluster.layout import DEFAULT_NODE_NAME, DEFAULT_RUN_DIR, KUBECONFIG_CONTEXT
from localcluster.processes import ComponentError
from localcluster.releases import DownloadError
from localcluster.versions import DEFAULT_KUBERNETES_VERSION, VersionError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("LOCALCLUSTER_RUN_DIR", DEFAULT_RUN_DIR)),
        help="directory holding all state of the cluster (env LOCALCLUSTER_RUN_DIR)",
    )
    parser.add_argument(
        "--kubernetes-version",
        default=os.environ.get("LOCALCLUSTER_KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION),
        help="Kubernetes release to run, v1.34.0 or later (env LOCALCLUSTER_KUBERNETES_VERSION)",
    )
    parser.add_argument(
        "--binaries",
        choices=BINARY_SOURCES,
        default=os.environ.get("LOCALCLUSTER_BINARIES", "auto"),
        help="where missing binaries come from: the official releases, SHA-256 checked "
        "(download), the Go module proxy (build), or the first that works (auto; "
        "env LOCALCLUSTER_BINARIES)",
    )
    parser.add_argument(
        "--feature-gates",
        default=os.environ.get("LOCALCLUSTER_FEATURE_GATES", ""),
        help="Kubernetes feature gates for every component, e.g. DRAConsumableCapacity=true "
        "(env LOCALCLUSTER_FEATURE_GATES); changing them needs `down` first",
    )
    parser.add_argument(
        "--node-name",
        default=os.environ.get("LOCALCLUSTER_NODE_NAME", DEFAULT_NODE_NAME),
        help="name the kubelet registers (env LOCALCLUSTER_NODE_NAME)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="download or build (or find cached) binaries only")
    up = commands.add_parser("up", help="start the cluster (idempotent)")
    up.add_argument(
        "--control-plane-only", action="store_true", help="no containerd, kubelet or kube-proxy"
    )
    down = commands.add_parser("down", help="stop everything and remove all state from the host")
    status = commands.add_parser("status", help="which components run")
    commands.add_parser("kubeconfig", help="print the admin kubeconfig path")
    image = commands.add_parser("import-image", help="import a `docker save` archive")
    image.add_argument("archive", type=Path)
    image_ids = commands.add_parser(
        "image-ids", help="the image IDs the node holds under a name (read-only)"
    )
    image_ids.add_argument("reference")
    for command in (up, down, status, image, image_ids):
        command.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def up_report(result: UpResult, kubeconfig: Path, context: str) -> dict[str, Any]:
    """What `up --json` prints: changed when it started any component."""
    return {
        "command": "up",
        "changed": bool(result.started),
        "started": list(result.started),
        "seconds": round(result.seconds, 1),
        "kubeconfig": str(kubeconfig),
        "context": context,
    }


def down_report(stopped: bool) -> dict[str, Any]:
    """What `down --json` prints: changed when a cluster (or its leftovers) was removed."""
    return {"command": "down", "changed": stopped}


def import_report(archive: Path, imported: list[tuple[str, bool]]) -> dict[str, Any]:
    """What `import-image --json` prints: changed when any image was new to the node."""
    return {
        "command": "import-image",
        "changed": any(changed for _reference, changed in imported),
        "archive": str(archive),
        "images": [{"reference": reference, "changed": changed} for reference, changed in imported],
    }


def image_ids_report(reference: str, ids: list[str]) -> dict[str, Any]:
    """What `image-ids --json` prints: the node's image IDs under `reference`
    (its image is present when Docker's image ID is among them)."""
    return {"command": "image-ids", "reference": reference, "ids": ids}


def _print_json(report: dict[str, Any]) -> None:
    print(json.dumps(report, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cluster = LocalCluster(
            run_dir=args.run_dir,
            kubernetes_version=args.kubernetes_version,
            node_name=args.node_name,
            binaries_source=args.binaries,
            feature_gates=featuregates.parse(args.feature_gates),
        )
        return _dispatch(cluster, args)
    except (
        BuildError,
        ClusterError,
        ComponentError,
        DownloadError,
        featuregates.FeatureGateError,
        HostStateError,
        ImageError,
        VersionError,
    ) as error:
        print(f"localcluster: error: {error}", file=sys.stderr)
        return 1


def _dispatch(cluster: LocalCluster, args: argparse.Namespace) -> int:
    if args.command == "build":
        binaries = cluster.build()
        print(f"localcluster: binaries ready in {binaries.kubernetes.parent}")
    elif args.command == "up":
        _up(cluster, args)
    elif args.command == "down":
        _down(cluster, args)
    elif args.command == "status":
        return _status(cluster, args)
    elif args.command == "kubeconfig":
        print(cluster.kubeconfig)
    elif args.command == "import-image":
        _import_image(cluster, args)
    elif args.command == "image-ids":
        _image_ids(cluster, args)
    return 0


def _up(cluster: LocalCluster, args: argparse.Namespace) -> None:
    result = cluster.up(with_node=not args.control_plane_only)
    if args.json:
        _print_json(up_report(result, cluster.kubeconfig, KUBECONFIG_CONTEXT))
        return
    print(f"localcluster: kubeconfig {cluster.kubeconfig}")
    if result.started:
        print(f"localcluster: up in {result.seconds:.1f}s")
    else:
        print("localcluster: up (already running)")


def _down(cluster: LocalCluster, args: argparse.Namespace) -> None:
    stopped = cluster.down()
    if args.json:
        _print_json(down_report(stopped))
    else:
        print("localcluster: down" if stopped else "localcluster: not running")


def _status(cluster: LocalCluster, args: argparse.Namespace) -> int:
    status = cluster.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for name, component in status["components"].items():
        state = f"running (pid {component['pid']})" if component["running"] else "stopped"
        print(f"{name:24} {state}")
    return 0 if status["running"] else 3


def _image_ids(cluster: LocalCluster, args: argparse.Namespace) -> None:
    ids = cluster.image_ids(args.reference)
    if args.json:
        _print_json(image_ids_report(args.reference, ids))
        return
    for image_id in ids:
        print(image_id)


def _import_image(cluster: LocalCluster, args: argparse.Namespace) -> None:
    imported = cluster.import_image(args.archive)
    if args.json:
        _print_json(import_report(args.archive, imported))
        return
    for reference, changed in imported:
        verb = "imported" if changed else "already present"
        print(f"localcluster: {verb} {reference}")
