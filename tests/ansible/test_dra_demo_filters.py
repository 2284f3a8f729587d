"""Unit tests of roles/dra_demo/filter_plugins (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

DRIVER = "file.dra.example.com"


def _slice(node: str, *devices: str, shared: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node}-slice"},
        "spec": {
            "nodeName": node,
            "pool": {"name": node},
            "devices": [
                {
                    "name": name,
                    "attributes": {
                        "path": {"string": f"/etc/dra/{name}"},
                        "shared": {"bool": shared},
                    },
                }
                for name in devices
            ],
        },
    }


def _pod(name: str, node: str, claim: str | None, *, terminating: bool = False) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"nodeName": node},
        "status": {"phase": "Running"},
    }
    if claim is not None:
        pod["status"]["resourceClaimStatuses"] = [{"name": "file", "resourceClaimName": claim}]
    if terminating:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return pod


def _claim(name: str, node: str, device: str, driver: str = DRIVER) -> dict[str, Any]:
    result = {"driver": driver, "pool": node, "device": device, "request": "file"}
    return {
        "metadata": {"name": name},
        "status": {"allocation": {"devices": {"results": [result]}}},
    }


def test_offer_rows(demo_filters: ModuleType) -> None:
    slices = [_slice("n2", "file1"), _slice("n1", "file2", "file1")]
    slices.append(
        {
            "metadata": {"name": "x"},
            "spec": {"pool": {"name": "n3"}, "devices": [{"name": "file1"}]},
        }
    )
    offer = demo_filters.device_offer(slices, "/etc/dra")
    assert offer == [
        {"node": "n1", "device": "file1", "path": "/etc/dra/file1", "shared": False},
        {"node": "n1", "device": "file2", "path": "/etc/dra/file2", "shared": False},
        {"node": "n2", "device": "file1", "path": "/etc/dra/file1", "shared": False},
        # No nodeName: the pool names the node; no path attribute: the directory.
        {"node": "n3", "device": "file1", "path": "/etc/dra/file1", "shared": False},
    ]
    assert demo_filters.device_capacity(offer) == 4
    assert (
        demo_filters.device_capacity(
            demo_filters.device_offer([_slice("n1", "file1", shared=True)], "/d")
        )
        == "unlimited"
    )
    assert demo_filters.device_capacity([]) == 0


def test_allocations_join_pods_claims_and_devices(demo_filters: ModuleType) -> None:
    offer = demo_filters.device_offer([_slice("n1", "file1"), _slice("n2", "file1")], "/etc/dra")
    pods = [
        _pod("p-b", "n2", "claim-b"),
        _pod("p-a", "n1", "claim-a"),
        _pod("p-gone", "n1", "claim-gone", terminating=True),  # leaving: not counted
        _pod("p-pending", "", None),  # no claim yet
        _pod("p-other", "n1", "claim-other"),  # another driver's device
        _pod("p-wrong", "n1", "claim-wrong"),  # allocated from another node's pool
    ]
    claims = [
        _claim("claim-a", "n1", "file1"),
        _claim("claim-b", "n2", "file1"),
        _claim("claim-gone", "n1", "file1"),
        _claim("claim-other", "n1", "gpu0", driver="gpu.example.com"),
        _claim("claim-wrong", "n2", "file1"),
    ]
    alloc = demo_filters.allocations(
        pods, claims, offer, driver=DRIVER, pod_claim_name="file", file_dir="/etc/dra"
    )
    assert alloc == [
        {
            "pod": "p-a",
            "node": "n1",
            "pool": "n1",
            "own_pool": True,
            "device": "file1",
            "path": "/etc/dra/file1",
        },
        {
            "pod": "p-b",
            "node": "n2",
            "pool": "n2",
            "own_pool": True,
            "device": "file1",
            "path": "/etc/dra/file1",
        },
        {
            "pod": "p-wrong",
            "node": "n1",
            "pool": "n2",
            "own_pool": False,
            "device": "file1",
            "path": "/etc/dra/file1",
        },
    ]
    rows = demo_filters.pod_rows(pods)
    assert [r["name"] for r in rows] == sorted(p["metadata"]["name"] for p in pods)
    assert next(r for r in rows if r["name"] == "p-gone")["terminating"] is True
    assert next(r for r in rows if r["name"] == "p-pending")["node"] == ""


def test_pod_rows_say_whether_the_pod_is_ready_and_what_its_readiness_stands_for(
    demo_filters: ModuleType,
) -> None:
    probe = ["sh", "-c", 'grep -qxF "$POD_NAME" /etc/dra/*']
    ready = _pod("p-ready", "n1", "c1")
    ready["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True"},
    ]
    ready["spec"]["containers"] = [
        {"name": "sidecar", "readinessProbe": {"exec": {"command": ["true"]}}},
        {"name": "app", "readinessProbe": {"exec": {"command": probe}}},
    ]
    not_ready = _pod("p-waiting", "n1", "c2")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    not_ready["spec"]["containers"] = [{"name": "app", "readinessProbe": {"httpGet": {}}}]
    no_status = _pod("p-new", "n2", None)
    del no_status["status"]
    rows = {row["name"]: row for row in demo_filters.pod_rows([ready, not_ready, no_status])}
    assert (rows["p-ready"]["ready"], rows["p-ready"]["probe"]) == (True, probe)
    # An exec-less probe, or no app container at all, stands for nothing here.
    assert (rows["p-waiting"]["ready"], rows["p-waiting"]["probe"]) == (False, None)
    assert (rows["p-new"]["ready"], rows["p-new"]["probe"]) == (False, None)
    assert rows["p-new"]["phase"] == "Unknown"
    assert demo_filters.pod_rows([ready], container="sidecar")[0]["probe"] == ["true"]


def test_expected_files_cover_every_offered_device(demo_filters: ModuleType) -> None:
    offer = demo_filters.device_offer(
        [_slice("n1", "file1", "file2"), _slice("n2", "file1")], "/etc/dra"
    )
    alloc = [
        {"pod": "p2", "node": "n1", "device": "file1"},
        {"pod": "p1", "node": "n1", "device": "file1"},  # shared device: two pods
        {"pod": "p3", "node": "n2", "device": "file1"},
    ]
    expected = demo_filters.expected_files(alloc, offer)
    assert [(row["node"], row["device"], row["pods"]) for row in expected] == [
        ("n1", "file1", ["p1", "p2"]),
        ("n1", "file2", []),  # nothing allocated: the file must be empty
        ("n2", "file1", ["p3"]),
    ]
    assert all(row["path"].startswith("/etc/dra/") for row in expected)


@pytest.mark.parametrize(
    ("text", "pods", "holds"),
    [
        ("p1\np2\n", ["p2", "p1"], True),
        ("  p1 \n\n", ["p1"], True),
        ("", [], True),
        (None, [], True),  # a file that does not exist reads as empty
        ("p1\n", [], False),
        ("p1\np1\n", ["p1"], False),  # a name twice is not "exactly"
        ("p1\n", ["p1", "p2"], False),
    ],
)
def test_holds_exactly(
    demo_filters: ModuleType, text: str | None, pods: list[str], holds: bool
) -> None:
    assert demo_filters.holds_exactly(text, pods) is holds


def test_file_contents_and_summary(demo_filters: ModuleType) -> None:
    results = [
        {
            "item": {"node": "node-long-name", "device": "file1", "path": "/etc/dra/file1"},
            "stdout": "p1\r\np2\n",
        },
        {"item": {"node": "n2", "device": "file1", "path": "/etc/dra/file1"}, "stdout": ""},
    ]
    files = demo_filters.file_contents(results)
    assert files[0]["lines"] == ["p1", "p2"]
    assert files[1]["lines"] == []
    table = demo_filters.summary_table(files)
    assert table == [
        "NODE            DEVICE  FILE            PODS",
        "node-long-name  file1   /etc/dra/file1  p1, p2",
        "n2              file1   /etc/dra/file1  (empty)",
    ]


# ---- input rules ------------------------------------------------------------
DEMO_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "roles/dra_demo/vars/main.yml").read_text()
)
PATTERNS = {
    "dns_label": DEMO_VARS["__dra_demo_dns_label_pattern"],
    "dns_subdomain": DEMO_VARS["__dra_demo_dns_subdomain_pattern"],
}
GOOD_INPUTS: dict[str, Any] = {
    "dra_demo_replicas": 0,
    "dra_demo_wait_timeout": 300,
    "dra_demo_namespace": "dra-demo",
    "dra_demo_device_class_name": "file.dra.example.com",
    "dra_demo_claim_template_name": "file-claim-template",
    "dra_demo_deployment_name": "dra-test-deployment",
}


def test_good_demo_inputs_have_no_problem(demo_filters: ModuleType) -> None:
    assert demo_filters.input_problems(GOOD_INPUTS, PATTERNS) == []
    assert demo_filters.input_problems({**GOOD_INPUTS, "dra_demo_replicas": "3"}, PATTERNS) == []


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"dra_demo_replicas": -1}, "dra_demo_replicas=-1"),
        ({"dra_demo_replicas": "some"}, "dra_demo_replicas=some"),
        ({"dra_demo_wait_timeout": "0"}, "dra_demo_wait_timeout=0"),
        ({"dra_demo_namespace": "Demo"}, "dra_demo_namespace=Demo"),
        ({"dra_demo_namespace": "dra.demo"}, "dra_demo_namespace=dra.demo"),
        ({"dra_demo_device_class_name": "File"}, "dra_demo_device_class_name=File"),
        ({"dra_demo_claim_template_name": "a_b"}, "dra_demo_claim_template_name=a_b"),
        ({"dra_demo_deployment_name": "x\n"}, "dra_demo_deployment_name=x"),
    ],
)
def test_each_broken_demo_rule_is_one_message_naming_the_variable(
    demo_filters: ModuleType, changes: dict[str, Any], named: str
) -> None:
    problems = demo_filters.input_problems({**GOOD_INPUTS, **changes}, PATTERNS)
    assert len(problems) == 1, problems
    assert problems[0].startswith(named)
