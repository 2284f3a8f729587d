"""`localcluster`: build, start, stop and inspect the local cluster.

The last stdout line of `up`, `down` and `import-image` is a stable sentence
that automation (the Ansible role) reads to tell "changed" from "unchanged".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from localcluster import featuregates
from localcluster.binaries import BINARY_SOURCES, BuildError
from localcluster.cluster import ClusterError, LocalCluster
from localcluster.hoststate import HostStateError
from localcluster.images import ImageError
from localcluster.layout import DEFAULT_NODE_NAME, DEFAULT_RUN_DIR
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
    commands.add_parser("down", help="stop everything and remove all state from the host")
    status = commands.add_parser("status", help="which components run")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("kubeconfig", help="print the admin kubeconfig path")
    image = commands.add_parser("import-image", help="import a `docker save` archive")
    image.add_argument("archive", type=Path)
    return parser


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
        result = cluster.up(with_node=not args.control_plane_only)
        print(f"localcluster: kubeconfig {cluster.kubeconfig}")
        if result.started:
            print(f"localcluster: up in {result.seconds:.1f}s")
        else:
            print("localcluster: up (already running)")
    elif args.command == "down":
        print("localcluster: down" if cluster.down() else "localcluster: not running")
    elif args.command == "status":
        status = cluster.status()
        if args.json:
            print(json.dumps(status, indent=2))
            return 0
        for name, component in status["components"].items():
            state = f"running (pid {component['pid']})" if component["running"] else "stopped"
            print(f"{name:24} {state}")
        return 0 if status["running"] else 3
    elif args.command == "kubeconfig":
        print(cluster.kubeconfig)
    elif args.command == "import-image":
        for reference, changed in cluster.import_image(args.archive):
            verb = "imported" if changed else "already present"
            print(f"localcluster: {verb} {reference}")
    return 0
