"""Command lines and configuration files of each component.

Each function returns what to run; `cluster.py` decides when. Settings differ
from upstream defaults only where this machine or the run-directory layout
requires it, and each such setting says why.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localcluster import featuregates
from localcluster.binaries import Binaries
from localcluster.layout import CDI_SPEC_DIRS, KUBELET_ROOT, RunLayout
from localcluster.probes import client_tls, http_ok, self_signed_tls
from localcluster.versions import PAUSE_IMAGE

CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
RUNC = Path("/usr/sbin/runc")  # Debian's runc
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    ready_timeout: float
    env: dict[str, str] | None = None


def _pki(layout: RunLayout, name: str) -> str:
    return str(layout.pki / name)


def _admin_tls_ready(layout: RunLayout, path: str) -> Callable[[], bool]:
    def check() -> bool:
        context = client_tls(
            layout.pki / "ca.crt", layout.pki / "admin.crt", layout.pki / "admin.key"
        )
        return http_ok(f"{layout.network.apiserver_url}{path}", context)

    return check


def etcd(layout: RunLayout, binaries: Binaries) -> Component:
    net = layout.network
    client = f"http://127.0.0.1:{net.etcd_client_port}"
    peer = f"http://127.0.0.1:{net.etcd_peer_port}"
    return Component(
        name="etcd",
        argv=[
            str(binaries.path("etcd")),
            "--name=localcluster",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=localcluster={peer}",
            "--log-level=warn",
        ],
        ready=lambda: http_ok(f"{client}/health"),
        ready_timeout=60,
    )


def kube_apiserver(
    layout: RunLayout, binaries: Binaries, feature_gates: Mapping[str, bool]
) -> Component:
    net = layout.network
    return Component(
        name="kube-apiserver",
        argv=[
            str(binaries.path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{net.etcd_client_port}",
            f"--bind-address={net.node_ip}",
            f"--advertise-address={net.node_ip}",
            f"--secure-port={net.apiserver_port}",
            f"--tls-cert-file={_pki(layout, 'apiserver.crt')}",
            f"--tls-private-key-file={_pki(layout, 'apiserver.key')}",
            f"--client-ca-file={_pki(layout, 'ca.crt')}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={net.service_cidr}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={_pki(layout, 'sa.pub')}",
            f"--service-account-signing-key-file={_pki(layout, 'sa.key')}",
            f"--kubelet-client-certificate={_pki(layout, 'apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={_pki(layout, 'apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={_pki(layout, 'ca.crt')}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
            *featuregates.flags(feature_gates),
            "--v=1",
        ],
        ready=_admin_tls_ready(layout, "/readyz"),
        ready_timeout=120,
    )


def _control_loop_flags(
    layout: RunLayout, component: str, feature_gates: Mapping[str, bool]
) -> list[str]:
    """Flags the controller manager and the scheduler share: one identity for talking
    to the API server and for checking who calls their own health endpoint, which
    serves on loopback only; a single instance each, so no leader election."""
    kubeconfig = str(layout.component_kubeconfig(component))
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        *featuregates.flags(feature_gates),
        "--v=1",
    ]


def kube_controller_manager(
    layout: RunLayout, binaries: Binaries, feature_gates: Mapping[str, bool]
) -> Component:
    return Component(
        name="kube-controller-manager",
        argv=[
            str(binaries.path("kube-controller-manager")),
            *_control_loop_flags(layout, "kube-controller-manager", feature_gates),
            f"--service-account-private-key-file={_pki(layout, 'sa.key')}",
            f"--root-ca-file={_pki(layout, 'ca.crt')}",
            # Each controller acts as its own service account, as in kubeadm clusters,
            # so RBAC problems show up here as they would there.
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={layout.network.service_cidr}",
        ],
        ready=lambda: http_ok("https://127.0.0.1:10257/healthz", self_signed_tls()),
        ready_timeout=60,
    )


def kube_scheduler(
    layout: RunLayout, binaries: Binaries, feature_gates: Mapping[str, bool]
) -> Component:
    return Component(
        name="kube-scheduler",
        argv=[
            str(binaries.path("kube-scheduler")),
            *_control_loop_flags(layout, "kube-scheduler", feature_gates),
        ],
        ready=lambda: http_ok("https://127.0.0.1:10259/healthz", self_signed_tls()),
        ready_timeout=60,
    )


def containerd_config(layout: RunLayout) -> str:
    """containerd 2.x configuration (version 3): every path inside the run directory."""
    base = layout.containerd_dir
    cdi_dirs = ", ".join(f'"{path}"' for path in CDI_SPEC_DIRS)
    return f"""\
version = 3
root = "{base / "root"}"
state = "{base / "state"}"
# NRI would open a socket under /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{base / "opt"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Built locally and imported: no registry is reachable to pull it from.
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # CDI is always on in containerd 2 (DRA injects devices through it); these are
  # the directories a DRA driver writes its specs to.
  cdi_spec_dirs = [{cdi_dirs}]
  # The kubelet asks for oom_score_adj -998 for sandboxes, and lowering it needs
  # CAP_SYS_RESOURCE, which some VMs (ours) lack in their bounding set: runc then
  # fails with "can't get final child's PID from pipe". Clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{base / "runc"}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"""


def cni_config(layout: RunLayout) -> str:
    net = layout.network
    config = {
        "cniVersion": "1.0.0",
        "name": "localcluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": True,
                # Pods only talk to the node (the API server) and each other:
                # no masquerading, so no NAT rules to leave behind.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net.pod_cidr), "gateway": str(net.node_ip)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def containerd(layout: RunLayout, binaries: Binaries) -> Component:
    config_path = layout.config_dir / "containerd.toml"
    return Component(
        name="containerd",
        argv=[str(binaries.path("containerd")), f"--config={config_path}"],
        ready=lambda: layout.containerd_socket.is_socket() and ctr_ok(layout, binaries),
        ready_timeout=60,
        # containerd starts its runc shim by name from PATH.
        env={"PATH": binaries.search_path},
    )


def ctr_ok(layout: RunLayout, binaries: Binaries) -> bool:
    result = subprocess.run(
        [str(binaries.path("ctr")), f"--address={layout.containerd_socket}", "version"],
        capture_output=True,
        check=False,
        timeout=10,
    )
    return result.returncode == 0


def kubelet_config(layout: RunLayout, feature_gates: Mapping[str, bool]) -> str:
    net = layout.network
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": str(net.node_ip),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": _pki(layout, "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": _pki(layout, "kubelet-serving.crt"),
        "tlsPrivateKeyFile": _pki(layout, "kubelet-serving.key"),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # These machines run cgroup v1 (hybrid mode); kubelet 1.35+ refuses it unless told.
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs_dir),
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        # A shared development machine: do not evict pods for its disk or memory use.
        "evictionHard": {
            "memory.available": "1%",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # Lowering one's own oom_score_adj (default -999) needs CAP_SYS_RESOURCE.
        "oomScoreAdj": 0,
        **featuregates.config_fields(feature_gates),
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet(layout: RunLayout, binaries: Binaries, node_name: str) -> Component:
    def node_ready() -> bool:
        return http_ok("http://127.0.0.1:10248/healthz")

    return Component(
        name="kubelet",
        argv=[
            str(binaries.path("kubelet")),
            f"--config={layout.config_dir / 'kubelet.json'}",
            f"--kubeconfig={layout.component_kubeconfig('kubelet')}",
            f"--root-dir={KUBELET_ROOT}",
            f"--hostname-override={node_name}",
            f"--node-ip={layout.network.node_ip}",
            "--v=2",
        ],
        ready=node_ready,
        ready_timeout=120,
        env={"PATH": binaries.search_path},
    )


def kube_proxy_config(layout: RunLayout, node_name: str, feature_gates: Mapping[str, bool]) -> str:
    net = layout.network
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": str(net.pod_cidr),
        "hostnameOverride": node_name,
        "bindAddress": str(net.node_ip),
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the host's conntrack table size alone.
        "conntrack": {"maxPerCore": 0},
        "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
        # NodePorts only on the node's own bridge address, never on the host's interfaces.
        "nodePortAddresses": [f"{net.node_ip}/32"],
        **featuregates.config_fields(feature_gates),
    }
    return json.dumps(config, indent=2) + "\n"


def kube_proxy(layout: RunLayout, binaries: Binaries) -> Component:
    return Component(
        name="kube-proxy",
        argv=[
            str(binaries.path("kube-proxy")),
            f"--config={layout.config_dir / 'kube-proxy.json'}",
            "--v=1",
        ],
        ready=lambda: http_ok("http://127.0.0.1:10256/healthz"),
        ready_timeout=60,
        env={"PATH": binaries.search_path},
    )
