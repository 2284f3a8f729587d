"""Where a cluster run keeps its state, and the addresses it uses.

Everything the cluster writes lives under one run directory, except the paths
that Kubernetes and CDI fix for drivers and that a DRA driver must find at the
same place as on any node: the kubelet's root (`/var/lib/kubelet`, which holds
`plugins_registry/`) and the CDI spec directories.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RUN_DIR = Path("/var/lib/dra-localcluster")
DEFAULT_NODE_NAME = "dra-local-node"
KUBECONFIG_CONTEXT = "localcluster"

KUBELET_ROOT = Path("/var/lib/kubelet")
CDI_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# Where containerd's CNI library caches results, and where it mounts pod netns.
CNI_CACHE_DIR = Path("/var/lib/cni")
NETNS_DIR = Path("/var/run/netns")
# containerd's runc shims put their sockets here whatever the configured state dir.
SHIM_SOCKET_DIR = Path("/run/containerd")


DEFAULT_POD_CIDR = ipaddress.IPv4Network("10.244.0.0/24")
DEFAULT_SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/24")


@dataclass(frozen=True)
class Network:
    """Addresses of the cluster. Pods sit on a bridge whose gateway is the node.

    The API server listens on the bridge's gateway address, not on every
    interface: pods reach it there (through the `kubernetes` Service), the host
    reaches it there too, and nothing is exposed beyond this machine.
    """

    bridge: str = "lcbr0"
    pod_cidr: ipaddress.IPv4Network = DEFAULT_POD_CIDR
    service_cidr: ipaddress.IPv4Network = DEFAULT_SERVICE_CIDR
    apiserver_port: int = 6443
    etcd_client_port: int = 12379
    etcd_peer_port: int = 12380

    @property
    def node_ip(self) -> ipaddress.IPv4Address:
        return next(self.pod_cidr.hosts())

    @property
    def kubernetes_service_ip(self) -> ipaddress.IPv4Address:
        return next(self.service_cidr.hosts())

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.node_ip}:{self.apiserver_port}"


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory."""

    root: Path
    network: Network = field(default_factory=Network)

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / "kubeconfigs" / f"{component}.kubeconfig"

    def log_file(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.root / "pids" / f"{component}.pid"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def pod_logs_dir(self) -> Path:
        return self.root / "pod-logs"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"
