"""Bring a single-node cluster up and down, and report on it.

The order mirrors how a node joins a real cluster: storage, API server, the
two control loops, then the runtime, the kubelet (which registers the node)
and kube-proxy. `up` only starts what is not already running, so it is safe to
repeat; when it fails, it takes down what it started and names the component.

The Kubernetes client (about 0.5 s to import) and the PKI's cryptography are
imported where `up` uses them, not at the top: `status`, `import-image` and
`down`, which every playbook run calls, start without them
(tests/test_cli_startup.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localcluster import components, featuregates, hoststate, images
from localcluster.binaries import Binaries, BinarySource, ensure_binaries
from localcluster.layout import (
    CDI_SPEC_DIRS,
    CNI_CACHE_DIR,
    DEFAULT_NODE_NAME,
    DEFAULT_RUN_DIR,
    KUBECONFIG_CONTEXT,
    KUBELET_ROOT,
    NETNS_DIR,
    SHIM_SOCKET_DIR,
    RunLayout,
)
from localcluster.processes import (
    ComponentError,
    Supervisor,
    is_alive,
    live_processes,
    shares_mount_namespace,
)
from localcluster.versions import BUSYBOX_IMAGE, DEFAULT_KUBERNETES_VERSION, KubernetesVersion

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE = ("containerd", "kubelet", "kube-proxy")
# Host paths the node may create; removed by `down` only if `up` created them.
HOST_PATHS = (KUBELET_ROOT, CNI_CACHE_DIR, NETNS_DIR, SHIM_SOCKET_DIR, *CDI_SPEC_DIRS)
SMOKE_POD = "localcluster-smoke"
# Names the run directory whose cluster owns the machine-wide node state (tmpfs:
# a reboot, which also ends every process, clears it).
HOST_OWNER_FILE = Path("/run/dra-localcluster.owner")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """The cluster cannot be brought up as asked."""


@dataclass
class RunState:
    """What `up` recorded about this run, so `down` undoes exactly that."""

    kubernetes_version: str
    node_name: str
    feature_gates: dict[str, bool] = field(default_factory=dict)
    created_host_paths: list[str] = field(default_factory=list)
    # Whether a kubelet or containerd was ever started: only then is there
    # node state (netns, iptables chains) for `down` to remove.
    node_started: bool = False

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass(frozen=True)
class UpResult:
    started: tuple[str, ...]
    seconds: float


class LocalCluster:
    def __init__(
        self,
        run_dir: Path = DEFAULT_RUN_DIR,
        kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
        node_name: str = DEFAULT_NODE_NAME,
        *,
        cache_dir: Path | None = None,
        log: Log = _stderr,
        binaries_source: BinarySource = "auto",
        feature_gates: Mapping[str, bool] | None = None,
    ) -> None:
        self.version = KubernetesVersion.parse(kubernetes_version)
        self.layout = RunLayout(run_dir.resolve())
        self.node_name = node_name
        self.feature_gates = dict(feature_gates or {})
        self.cache_dir = cache_dir
        self.log = log
        self.binaries_source = binaries_source
        self.supervisor = Supervisor(self.layout)
        self._binaries: Binaries | None = None

    # --- public operations --------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    def build(self) -> Binaries:
        """The binaries of this version, obtained on first use; later calls reuse the answer."""
        if self._binaries is None:
            self._binaries = ensure_binaries(
                self.version, self.cache_dir, self.log, source=self.binaries_source
            )
        return self._binaries

    def up(self, with_node: bool = True) -> UpResult:
        started_at = time.monotonic()
        _preflight(with_node)
        binaries = self.build()
        self._claim_host()
        state = self._claim_run_state()
        wanted = CONTROL_PLANE + (NODE if with_node else ())
        missing = [name for name in wanted if self.supervisor.find(name) is None]
        if not missing:
            return UpResult((), time.monotonic() - started_at)
        try:
            self._start(missing, binaries, state)
        except BaseException:
            self.log("localcluster: bring-up failed; stopping what was started")
            self.down()
            raise
        return UpResult(tuple(missing), time.monotonic() - started_at)

    def down(self) -> bool:
        """Stop everything and remove every trace on the host; True if anything ran."""
        state = RunState.load(self.layout.state_file)
        was_running = any(self.supervisor.find(n) for n in (*CONTROL_PLANE, *NODE))
        owner = _host_owner()
        if owner is not None and owner != self.layout.root:
            # Another run directory's cluster holds the node paths, the bridge and
            # the iptables chains: touching them would break it. Stop only what
            # this run directory recorded, and remove the directory itself.
            for name in (*reversed(NODE), *reversed(CONTROL_PLANE)):
                self.supervisor.stop(name)
            if self.layout.root.exists():
                hoststate.remove_tree(self.layout.root)
            return was_running or state is not None
        if state is None and owner is None:
            return was_running  # nothing of ours on this host
        self._stop_node()
        for name in reversed(CONTROL_PLANE):
            self.supervisor.stop(name)
        if state is None or state.node_started:
            # Node state: we hold the host marker, and `up` refuses to start a node
            # beside a foreign kubelet, so these are our kubelet's and runtime's.
            hoststate.remove_kube_iptables()
            hoststate.remove_network_namespaces()
        busy_mounts = hoststate.unmount_all(KUBELET_ROOT, self.layout.root)
        busy_cgroups = hoststate.remove_kubelet_cgroups()
        hoststate.remove_pod_veths(self.layout.network)
        hoststate.remove_bridge(self.layout.network)
        if busy_mounts or busy_cgroups:
            raise ClusterError(
                f"could not remove mounts {busy_mounts} or cgroups {busy_cgroups}; "
                "some process still uses them"
            )
        if state is not None:
            for created in state.created_host_paths:
                hoststate.remove_tree(Path(created))
        if self.layout.root.exists():
            hoststate.remove_tree(self.layout.root)
        HOST_OWNER_FILE.unlink(missing_ok=True)
        return was_running or state is not None

    def status(self) -> dict[str, Any]:
        state = RunState.load(self.layout.state_file)
        found = {name: self.supervisor.find(name) for name in (*CONTROL_PLANE, *NODE)}
        return {
            "running": state is not None and all(found[name] for name in CONTROL_PLANE),
            "node_running": all(found[name] for name in NODE),
            "kubeconfig": str(self.kubeconfig),
            "context": KUBECONFIG_CONTEXT,
            "node_name": state.node_name if state else self.node_name,
            "kubernetes_version": state.kubernetes_version if state else self.version.tag,
            "feature_gates": state.feature_gates if state else self.feature_gates,
            "components": {
                name: {"pid": proc.pid if proc else None, "running": proc is not None}
                for name, proc in found.items()
            },
        }

    def image_ids(self, reference: str) -> list[str]:
        """The image IDs (config digests) the node holds under `reference`
        (normalized as the node stores it): none when the name is unknown."""
        node_images = self._running_node_images()
        return sorted(node_images.image_ids(images.normalize_reference(reference)))

    def import_image(self, archive: Path) -> list[tuple[str, bool]]:
        """Import a `docker save` archive into the node; (reference, changed) per image."""
        return self._running_node_images().import_archive(archive)

    def _running_node_images(self) -> images.NodeImages:
        """The images of the running node's containerd; ClusterError when it is not running."""
        binaries = self.build()
        if self.supervisor.find("containerd") is None:
            raise ClusterError("the node is not running: run `localcluster up` first")
        return self._node_images(binaries)

    # --- bring-up -------------------------------------------------------------

    def _claim_host(self) -> None:
        """Make this run directory the one cluster that owns the host's node state.

        The kubelet root, the bridge, the CDI directories and the iptables chains
        are machine-wide, so only one local cluster can run at a time. Refuse
        before touching anything when another run directory's cluster is running.
        """
        owner = _host_owner()
        if owner is not None and owner != self.layout.root:
            other = Supervisor(RunLayout(owner))
            alive = [name for name in (*CONTROL_PLANE, *NODE) if other.find(name)]
            if alive:
                raise ClusterError(
                    f"another local cluster is running from {owner} ({', '.join(alive)}); "
                    f"stop it first with: localcluster --run-dir {owner} down"
                )
            self.log(f"localcluster: taking over from {owner}, whose processes are gone")
        if self.supervisor.find("kubelet") is None:
            # Kubelets in containers (kind's nodes) have their own mounts and
            # network: they leave this machine's node paths alone.
            foreign = [
                pid
                for pid in live_processes(lambda command, _: command == "kubelet")
                if shares_mount_namespace(pid)
            ]
            if foreign:
                raise ClusterError(
                    f"a kubelet that is not this cluster's runs on this machine (pid "
                    f"{foreign[0]}); this cluster would fight it over /var/lib/kubelet, "
                    "the CDI directories and iptables"
                )
        HOST_OWNER_FILE.write_text(f"{self.layout.root}\n")

    def _claim_run_state(self) -> RunState:
        state = RunState.load(self.layout.state_file)
        if state is None:
            state = RunState(self.version.tag, self.node_name, self.feature_gates)
            state.created_host_paths = [str(p) for p in HOST_PATHS if not p.exists()]
            state.save(self.layout.state_file)
        else:
            # Components started with other settings would keep them: `up` only
            # starts what is missing, so a change needs a fresh cluster.
            held = _settings(state.kubernetes_version, state.node_name, state.feature_gates)
            asked = _settings(self.version.tag, self.node_name, self.feature_gates)
            if held != asked:
                raise ClusterError(
                    f"{self.layout.root} holds a cluster of {held} (asked for {asked}); "
                    "run `localcluster down` before changing them"
                )
        return state

    def _start(self, missing: list[str], binaries: Binaries, state: RunState) -> None:
        if any(name in NODE for name in missing) and not state.node_started:
            state.node_started = True
            state.save(self.layout.state_file)
        hoststate.check_address_space(self.layout.network)
        hoststate.ensure_bridge(self.layout.network)
        from localcluster.pki import write_cluster_credentials  # noqa: PLC0415 - see the module docstring

        write_cluster_credentials(self.layout, self.node_name)
        for name in missing:
            component = self._component(name, binaries)
            self.log(f"localcluster: starting {name}")
            self.supervisor.start(name, component.argv, component.env)
            self.supervisor.wait_ready(name, component.ready, component.ready_timeout)
            if name == "containerd":
                self._import_base_images(binaries)
            if name == "kubelet":
                self._wait_node_ready(timeout=120)
        if "kubelet" in missing or "containerd" in missing:
            self._run_smoke_pod(timeout=120)

    def _component(self, name: str, binaries: Binaries) -> components.Component:
        layout = self.layout
        config = layout.config_dir
        config.mkdir(parents=True, exist_ok=True)
        if name == "containerd":
            layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
            (layout.cni_conf_dir / "10-localcluster.conflist").write_text(
                components.cni_config(layout)
            )
            (config / "containerd.toml").write_text(components.containerd_config(layout))
            return components.containerd(layout, binaries)
        gates = self.feature_gates
        if name == "kubelet":
            (config / "kubelet.json").write_text(components.kubelet_config(layout, gates))
            return components.kubelet(layout, binaries, self.node_name)
        if name == "kube-proxy":
            (config / "kube-proxy.json").write_text(
                components.kube_proxy_config(layout, self.node_name, gates)
            )
            return components.kube_proxy(layout, binaries)
        if name == "etcd":
            return components.etcd(layout, binaries)
        control_plane = {
            "kube-apiserver": components.kube_apiserver,
            "kube-controller-manager": components.kube_controller_manager,
            "kube-scheduler": components.kube_scheduler,
        }
        return control_plane[name](layout, binaries, gates)

    def _node_images(self, binaries: Binaries) -> images.NodeImages:
        return images.NodeImages(binaries.path("ctr"), self.layout.containerd_socket)

    def _import_base_images(self, binaries: Binaries) -> None:
        node_images = self._node_images(binaries)
        node_images.import_archive(
            images.build_pause_archive(binaries.path("pause"), self.layout.images_dir / "pause.tar")
        )
        node_images.import_archive(
            images.build_busybox_archive(self.layout.images_dir / "busybox.tar")
        )

    def _api(self) -> Any:
        from kubernetes import client, config  # noqa: PLC0415 - see the module docstring

        api_client = config.new_client_from_config(str(self.kubeconfig), context=KUBECONFIG_CONTEXT)
        return client.CoreV1Api(api_client)

    def _wait_node_ready(self, timeout: float) -> None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        api = self._api()

        def ready() -> bool:
            try:
                node = api.read_node(self.node_name)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            conditions = {c.type: c.status for c in node.status.conditions or []}
            return conditions.get("Ready") == "True"

        self.supervisor.wait_ready("kubelet", ready, timeout, interval=1.0)

    def _run_smoke_pod(self, timeout: float) -> None:
        """Prove the node runs pods: a busybox pod prints a line and its log comes back."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        api = self._api()
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": SMOKE_POD},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "smoke",
                        "image": BUSYBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "echo localcluster-smoke-ok"],
                    }
                ],
            },
        }
        deadline = time.monotonic() + timeout
        _delete_pod_if_present(api, SMOKE_POD)
        while True:
            try:
                api.create_namespaced_pod("default", manifest)
                break
            except ApiException as error:
                # 403: until the controller manager has made the "default"
                # ServiceAccount, admission refuses pods (a fresh cluster).
                # 409: the previous smoke pod is still being deleted.
                if error.status not in (403, 409) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        while True:
            phase = api.read_namespaced_pod(SMOKE_POD, "default").status.phase
            if phase == "Succeeded":
                break
            if phase == "Failed" or time.monotonic() > deadline:
                raise ComponentError(
                    "kubelet",
                    f"did not run the smoke pod (phase {phase})",
                    self.supervisor.log_tail("kubelet"),
                )
            time.sleep(1)
        logs = api.read_namespaced_pod_log(SMOKE_POD, "default")
        if "localcluster-smoke-ok" not in logs:
            raise ClusterError(f"the smoke pod ran but its log is {logs!r}")
        _delete_pod_if_present(api, SMOKE_POD)

    # --- teardown -------------------------------------------------------------

    def _stop_node(self) -> None:
        self.supervisor.stop("kubelet")
        self.supervisor.stop("kube-proxy")
        self._kill_pod_processes()
        self.supervisor.stop("containerd")
        self._kill_pod_processes()

    def _kill_pod_processes(self) -> None:
        """Kill containers (by their cgroup) and the runc shims of this containerd."""
        pids: set[int] = set()
        for top in hoststate.kubelet_cgroups():
            for procs in top.rglob("cgroup.procs"):
                pids.update(int(pid) for pid in procs.read_text().split())
        socket = str(self.layout.containerd_socket).encode()
        pids.update(
            live_processes(
                lambda _, argv: (
                    argv[0].endswith(b"containerd-shim-runc-v2")
                    and any(socket in arg for arg in argv)
                )
            )
        )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if is_alive(pid)}
            time.sleep(0.1)


def _delete_pod_if_present(api: Any, name: str) -> None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        api.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise


def _host_owner() -> Path | None:
    try:
        return Path(HOST_OWNER_FILE.read_text().strip())
    except FileNotFoundError:
        return None


def _settings(version: str, node_name: str, feature_gates: Mapping[str, bool]) -> str:
    """The settings a cluster is started with and keeps, in words."""
    gates = featuregates.render(feature_gates) or "none"
    return f"Kubernetes {version}, node {node_name}, feature gates {gates}"


def _preflight(with_node: bool) -> None:
    if os.geteuid() != 0:
        raise ClusterError("the local cluster runs a kubelet and needs root; run as root")
    tools = ["ip"]
    if with_node:
        tools += ["iptables", "conntrack", "umount"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    files = [components.RUNC, components.CNI_BIN_DIR / "bridge", images.BUSYBOX_BINARY]
    if with_node:
        missing += [str(path) for path in files if not path.exists()]
    if missing:
        raise ClusterError(
            "missing on this machine: "
            + ", ".join(missing)
            + " (Debian packages: iproute2 iptables conntrack runc "
            "containernetworking-plugins busybox-static; Go from go.dev)"
        )
