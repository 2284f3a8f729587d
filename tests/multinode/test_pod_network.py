"""Each node runs its pods in its own pod network.

The node image built here has no kindnetd (it cannot be pulled): a service
in every node makes a bridge from the node's pod CIDR and routes to the
other nodes. A demo pod that got an address from another node's range, or
from none, would mean that per-node networking is broken even though the
pods run. One demo pod runs on every node, so every node's range is seen.
"""

from __future__ import annotations

import ipaddress

import pytest

from .kube_api import KubeApi
from .settings import Settings

pytestmark = [pytest.mark.kind, pytest.mark.multinode]


def test_every_demo_pod_has_an_address_from_its_own_nodes_pod_cidr(
    settings: Settings, kube: KubeApi
) -> None:
    cidrs = {
        node["metadata"]["name"]: ipaddress.ip_network(node["spec"]["podCIDR"])
        for node in kube.nodes()
    }
    deployment = kube.deployment(settings.demo_namespace, settings.deployment)
    labels = deployment["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    pods = kube.pods(settings.demo_namespace, selector)
    nodes_seen = set()
    for pod in pods:
        name, node = pod["metadata"]["name"], pod["spec"].get("nodeName", "")
        address = pod.get("status", {}).get("podIP")
        assert address, f"pod {name} on {node!r} has no address"
        assert ipaddress.ip_address(address) in cidrs[node], (
            f"pod {name} on {node} has {address}, outside its node's pod CIDR {cidrs[node]}"
        )
        nodes_seen.add(node)
    assert len(set(cidrs.values())) == len(cidrs), f"nodes share a pod CIDR: {cidrs}"
    assert nodes_seen == set(cidrs), f"demo pods on {sorted(nodes_seen)}, nodes {sorted(cidrs)}"
