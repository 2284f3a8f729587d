"""Host state the node creates outside the run directory, and its removal.

A kubelet and a container runtime leave more behind than files: mounts (pod
volumes, container root filesystems, network-namespace handles), cgroups, a
bridge with veth pairs, and iptables chains. `down` must take all of it away
so the machine is left as it was; these helpers find each kind of leftover
from the kernel's own view (mountinfo, /sys, ip, iptables) rather than from
what the cluster believes it created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from localcluster.layout import NETNS_DIR, Network

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Top-level cgroups the kubelet creates with cgroupsPerQOS and the cgroupfs driver.
KUBELET_CGROUPS = ("kubepods",)


class HostStateError(RuntimeError):
    """The host is not in a state the cluster can use."""


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


# --- network ---------------------------------------------------------------


def ensure_bridge(network: Network) -> bool:
    """Create the pods' bridge with the node address; True if it had to be created.

    The API server listens on this address, so it must exist before the first
    pod (the CNI bridge plugin would otherwise create it only then).
    """
    created = False
    if not Path(f"/sys/class/net/{network.bridge}").exists():
        _run(["ip", "link", "add", network.bridge, "type", "bridge"])
        created = True
    address = f"{network.node_ip}/{network.pod_cidr.prefixlen}"
    addresses = _run(["ip", "-4", "-o", "addr", "show", "dev", network.bridge]).stdout
    if f" {address} " not in addresses:
        _run(["ip", "addr", "add", address, "dev", network.bridge])
    _run(["ip", "link", "set", network.bridge, "up"])
    return created


def check_address_space(network: Network) -> None:
    """Refuse to start when the pod or service range overlaps a network of the host."""
    routes = _run(["ip", "-4", "-o", "route", "show"]).stdout.splitlines()
    for route in routes:
        fields = route.split()
        if not fields or fields[0] == "default" or f"dev {network.bridge}" in route:
            continue
        try:
            destination = ipaddress.IPv4Network(fields[0], strict=False)
        except ValueError:
            continue
        for ours in (network.pod_cidr, network.service_cidr):
            if destination.overlaps(ours):
                raise HostStateError(
                    f"the cluster's range {ours} overlaps the host route {route.strip()!r}"
                )


def remove_bridge(network: Network) -> bool:
    if not Path(f"/sys/class/net/{network.bridge}").exists():
        return False
    _run(["ip", "link", "delete", network.bridge], check=False)
    return True


def bridge_ports(network: Network) -> list[str]:
    """Interfaces (pod veths) still attached to the bridge."""
    brif = Path(f"/sys/class/net/{network.bridge}/brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def remove_pod_veths(network: Network) -> None:
    for port in bridge_ports(network):
        _run(["ip", "link", "delete", port], check=False)


_IPTABLES_COMMANDS = ("iptables", "ip6tables")
_IPTABLES_TABLES = ("nat", "filter", "mangle")


def remove_kube_iptables() -> None:
    """Delete every KUBE-* chain and the jumps into them.

    `kube-proxy --cleanup` removes kube-proxy's chains, but the kubelet makes its
    own (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) in both the IPv4
    and IPv6 tables, and hooks KUBE-FIREWALL into INPUT and OUTPUT.
    """
    for command in _IPTABLES_COMMANDS:
        for table in _IPTABLES_TABLES:
            listing = _run([command, "-t", table, "-S"], check=False).stdout.splitlines()
            for rule in listing:
                # `-S` quotes arguments with spaces (rule comments): split as a shell would.
                fields = shlex.split(rule)
                if (
                    fields[:1] == ["-A"]
                    and "-j" in fields
                    and any(field.startswith("KUBE-") for field in fields)
                ):
                    _run([command, "-t", table, "-D", *fields[1:]], check=False)
            chains = [line.split()[1] for line in listing if line.startswith("-N KUBE-")]
            for chain in chains:
                _run([command, "-t", table, "-F", chain], check=False)
            for chain in chains:
                _run([command, "-t", table, "-X", chain], check=False)


# --- mounts and namespaces ---------------------------------------------------


def mounts_under(*prefixes: Path) -> list[Path]:
    """Mount points below any of `prefixes`, deepest first (the order to unmount)."""
    points: list[Path] = []
    with Path("/proc/self/mountinfo").open() as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with spaces etc. octal-escaped.
            point = Path(line.split()[4].encode().decode("unicode_escape"))
            if any(point == p or p in point.parents for p in prefixes):
                points.append(point)
    return sorted(set(points), key=lambda p: len(p.parts), reverse=True)


def unmount_all(*prefixes: Path) -> list[Path]:
    remaining: list[Path] = []
    for point in mounts_under(*prefixes):
        if _run(["umount", str(point)], check=False).returncode != 0:
            # Busy after its processes were killed (a namespace handle still
            # referenced): detach it now, the kernel frees it when released.
            _run(["umount", "--lazy", str(point)], check=False)
        if point in mounts_under(point):
            remaining.append(point)
    return remaining


def cni_network_namespaces() -> list[Path]:
    """Network-namespace handles containerd created for pod sandboxes."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p for p in NETNS_DIR.iterdir() if p.name.startswith("cni-"))


def remove_network_namespaces() -> None:
    for handle in cni_network_namespaces():
        _run(["umount", str(handle)], check=False)
        handle.unlink(missing_ok=True)


# --- cgroups -----------------------------------------------------------------


def kubelet_cgroups() -> list[Path]:
    """Cgroup directories the kubelet created, in every mounted hierarchy."""
    if not CGROUP_ROOT.is_dir():
        return []
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        for name in KUBELET_CGROUPS:
            candidate = hierarchy / name
            if candidate.is_dir():
                found.append(candidate)
    return found


def remove_kubelet_cgroups() -> list[Path]:
    """Remove the kubelet's cgroups bottom-up; return those still present (busy)."""
    for top in kubelet_cgroups():
        for directory, _subdirs, _files in sorted(
            os.walk(top), key=lambda entry: entry[0].count("/"), reverse=True
        ):
            # A cgroup that still has tasks stays; the caller reports what is left.
            with contextlib.suppress(OSError):
                Path(directory).rmdir()
    return kubelet_cgroups()


def remove_tree(path: Path) -> None:
    """Delete a directory tree that is known to have no mounts left under it."""
    if mounts_under(path):
        raise HostStateError(f"refusing to delete {path}: it still has mounts under it")
    shutil.rmtree(path, ignore_errors=True)
