"""The publisher's reconciliation and watch logic, against a fake of the slice API.

What the real API server accepts is tested in test_cluster_publish; here the
fake (fake_slice_api) counts lists and writes, so each test can say exactly
which writes a pass must make, and that a pass over published slices makes
none.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver import publisher
from dra_file_driver.devices import inventory
from dra_file_driver.metrics import Metrics

from .driver_testkit import wait_for
from .fake_slice_api import FakeSliceApi

DRIVER = "file.dra.example.com"
NODE = "node-a"
NODE_UID = "uid-node-a"


def new_publisher(api: FakeSliceApi, file_count: int = 2, shared: bool = False) -> Any:
    return publisher.SlicePublisher(
        api,
        driver_name=DRIVER,
        node_name=NODE,
        devices=inventory(Path("/etc/dra"), file_count),
        shared=shared,
        metrics=Metrics(),
    )


def expected_specs(file_count: int, generation: int, shared: bool = False) -> list[Any]:
    return publisher.build_slice_specs(
        DRIVER, NODE, inventory(Path("/etc/dra"), file_count), shared, generation
    )


def specs(api: FakeSliceApi) -> list[Any]:
    return [s["spec"] for s in sorted(api.slices.values(), key=lambda s: s["metadata"]["name"])]


@pytest.fixture
def api() -> FakeSliceApi:
    return FakeSliceApi({NODE: NODE_UID})


# --- one pass: sync() --------------------------------------------------------


def test_first_pass_creates_the_pool_owned_by_the_node(api: FakeSliceApi) -> None:
    new_publisher(api).sync()
    assert specs(api) == expected_specs(2, generation=0)
    (slice_obj,) = api.slices.values()
    assert slice_obj["metadata"]["ownerReferences"] == [
        publisher.node_owner_reference(NODE, NODE_UID)
    ]
    assert api.writes() == [("create", "")]


def test_a_pass_over_published_slices_writes_nothing(api: FakeSliceApi) -> None:
    new_publisher(api, 130).sync()
    before = {name: s["metadata"]["resourceVersion"] for name, s in api.slices.items()}
    api.calls.clear()
    # A new process (a restart) as well as the same one must find them up to date.
    new_publisher(api, 130).sync()
    new_publisher(api, 130).sync()
    assert api.writes() == []
    assert {name: s["metadata"]["resourceVersion"] for name, s in api.slices.items()} == before


def drop_device(obj: dict[str, Any]) -> None:
    obj["spec"]["devices"] = obj["spec"]["devices"][:-1]


def change_attribute(obj: dict[str, Any]) -> None:
    obj["spec"]["devices"][0]["attributes"]["path"] = {"string": "/elsewhere"}


def lose_owner(obj: dict[str, Any]) -> None:
    obj["metadata"]["ownerReferences"] = []


def owner_of_old_node(obj: dict[str, Any]) -> None:
    # A Node deleted and re-created under the same name has a new UID.
    obj["metadata"]["ownerReferences"] = [publisher.node_owner_reference(NODE, "uid-old")]


def wrong_slice_count(obj: dict[str, Any]) -> None:
    obj["spec"]["pool"]["resourceSliceCount"] += 1


def share_devices(obj: dict[str, Any]) -> None:
    obj["spec"]["devices"][0]["allowMultipleAllocations"] = True


TAMPERING = [drop_device, change_attribute, lose_owner, owner_of_old_node, wrong_slice_count]


@pytest.mark.parametrize("tamper", [*TAMPERING, share_devices], ids=lambda f: f.__name__)
def test_a_changed_slice_is_repaired_in_place_with_a_new_generation(
    api: FakeSliceApi, tamper: Callable[[dict[str, Any]], None]
) -> None:
    pub = new_publisher(api)
    pub.sync()
    (name,) = api.slices
    api.change(name, tamper)
    api.calls.clear()
    pub.sync()
    assert api.writes() == [("replace", name)]
    assert specs(api) == expected_specs(2, generation=1)
    assert api.slices[name]["metadata"]["ownerReferences"] == [
        publisher.node_owner_reference(NODE, NODE_UID)
    ]


def test_mixed_generations_are_rewritten_as_one(api: FakeSliceApi) -> None:
    pub = new_publisher(api, 130)
    pub.sync()
    first = sorted(api.slices)[0]
    api.change(first, lambda obj: obj["spec"]["pool"].update(generation=7))
    api.calls.clear()
    pub.sync()
    assert sorted(api.writes()) == [("replace", name) for name in sorted(api.slices)]
    assert specs(api) == expected_specs(130, generation=8)


def test_a_deleted_slice_comes_back_and_generations_are_never_reused(api: FakeSliceApi) -> None:
    pub = new_publisher(api)
    pub.sync()
    (first,) = api.slices
    api.remove(first)
    pub.sync()
    (second,) = api.slices
    assert second != first
    assert specs(api) == expected_specs(2, generation=1)
    # Even with no slice left to read a generation from.
    api.remove(second)
    pub.sync()
    assert specs(api) == expected_specs(2, generation=2)


def test_a_missing_and_an_extra_slice_are_both_noticed(api: FakeSliceApi) -> None:
    pub = new_publisher(api, 130)
    pub.sync()
    names = sorted(api.slices)
    api.remove(names[1])
    api.calls.clear()
    pub.sync()
    assert [w[0] for w in api.writes()] == ["replace", "create"]
    assert specs(api)[0]["devices"] == expected_specs(130, 1)[0]["devices"]
    assert sum(len(s["devices"]) for s in specs(api)) == 130

    # One slice too many, with the right content in the others.
    extra = {**api.slices[sorted(api.slices)[0]]}
    extra["metadata"] = {**extra["metadata"], "name": "extra"}
    api.add(extra)
    api.calls.clear()
    pub.sync()
    assert sorted(w[0] for w in api.writes()) == ["delete", "replace", "replace"]
    assert len(api.slices) == 2
    assert {s["pool"]["generation"] for s in specs(api)} == {2}
    assert sum(len(s["devices"]) for s in specs(api)) == 130


def test_slices_of_another_pool_name_are_replaced_by_new_ones(api: FakeSliceApi) -> None:
    old = publisher.new_slice(DRIVER, NODE, NODE_UID, expected_specs(2, 4)[0])
    old["metadata"] = {**old["metadata"], "name": "old-pool"}
    old["spec"]["pool"]["name"] = "old-pool-name"
    api.add(old)
    new_publisher(api).sync()
    # The pool name is immutable: create ours, delete theirs.
    assert [w[0] for w in api.writes()] == ["create", "delete"]
    assert specs(api) == expected_specs(2, generation=5)


def test_slices_of_other_nodes_and_drivers_are_left_alone(api: FakeSliceApi) -> None:
    for node, driver in [("node-b", DRIVER), (NODE, "other.example.com")]:
        spec = publisher.build_slice_specs(driver, node, inventory(Path("/x"), 1), False, 1)[0]
        obj = publisher.new_slice(driver, node, "uid-x", spec)
        obj["metadata"] = {**obj["metadata"], "name": f"{node}-{driver}"}
        api.add(obj)
    new_publisher(api).sync()
    assert api.writes() == [("create", "")]
    assert len(api.slices) == 3


def test_a_field_the_server_drops_is_not_rewritten_forever(api: FakeSliceApi) -> None:
    # Shared devices with DRAConsumableCapacity off: allowMultipleAllocations
    # is dropped on store, so the stored form never equals the one sent.
    def drop_allow_multiple(spec: dict[str, Any]) -> dict[str, Any]:
        for device in spec["devices"]:
            device.pop("allowMultipleAllocations", None)
        return spec

    api.store_spec = drop_allow_multiple
    pub = new_publisher(api, shared=True)
    pub.sync()
    api.calls.clear()
    pub.sync()
    assert api.writes() == []
    # It remembers the stored form, not "anything goes": a real change is repaired.
    (name,) = api.slices
    api.change(name, change_attribute)
    pub.sync()
    assert api.writes() == [("replace", name)]


def test_up_to_date_compares_everything_the_pool_promises(api: FakeSliceApi) -> None:
    pub = new_publisher(api, 130)
    pub.sync()
    published = [api.slices[n] for n in sorted(api.slices)]
    desired = expected_specs(130, 0)
    assert pub._up_to_date(published, desired, NODE_UID)
    assert pub._up_to_date(list(reversed(published)), desired, NODE_UID)  # order is no content
    assert not pub._up_to_date(published[:1], desired, NODE_UID)
    assert not pub._up_to_date([*published, published[0]], desired, NODE_UID)
    # Two slices, both with the first half of the devices: right count, wrong pool.
    twin = {**published[0], "metadata": {**published[0]["metadata"], "name": "twin"}}
    assert not pub._up_to_date([published[0], twin], desired, NODE_UID)
    assert not pub._up_to_date(published, desired, "uid-of-another-node")
    assert not pub._up_to_date(published, expected_specs(131, 0), NODE_UID)
    for tamper in [*TAMPERING, share_devices]:
        changed = copy.deepcopy(published)
        tamper(changed[0])
        assert not pub._up_to_date(changed, desired, NODE_UID), tamper.__name__


# --- the controller loop -------------------------------------------------------


@pytest.fixture
def running(api: FakeSliceApi) -> Iterator[Any]:
    pub = new_publisher(api)
    pub.start()
    yield pub
    pub.stop()
    assert not pub._thread.is_alive()


def test_own_writes_cause_no_relist(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    # The watch replayed the ADDED event of the publisher's own create; it
    # matched what the publisher had just written, so it did not list again.
    assert api.count("list") == 1
    assert api.count("watch") == 1


def test_a_deleted_slice_is_recreated_from_the_watch(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    (first,) = api.slices
    api.remove(first)
    wait_for(lambda: len(api.slices) == 1 and first not in api.slices, 10, "a new slice")
    wait_for(api.idle, 10, "the publisher to wait on its watch again")
    # One list for the start, one for the drift; none for the re-creation's own event.
    assert api.count("list") == 2
    assert specs(api) == expected_specs(2, generation=1)


def test_a_changed_slice_is_repaired_from_the_watch(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    (name,) = api.slices
    api.change(name, drop_device)
    wait_for(lambda: specs(api) == expected_specs(2, generation=1), 10, "the repaired slice")


def test_an_unrelated_event_causes_no_relist(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    (name,) = api.slices
    # Another client touches a label: the content still matches.
    api.change(name, lambda obj: obj["metadata"].setdefault("labels", {}).update(x="y"))
    wait_for(api.idle, 10, "the publisher to consume the event")
    assert api.count("list") == 1


def test_the_watch_ending_leads_to_a_relist(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    api.end_watches()  # the server's timeoutSeconds
    wait_for(lambda: api.count("watch") == 2 and api.idle(), 10, "a new watch")
    assert api.count("list") == 2
    assert api.writes() == [("create", "")]


def test_after_an_outage_a_missing_slice_is_recreated(api: FakeSliceApi, running: Any) -> None:
    wait_for(lambda: len(api.slices) == 1 and api.idle(), 10, "the published slice")
    api.outage(True)
    wait_for(lambda: api.count("node_uid") >= 3, 30, "failed retries")
    (name,) = api.slices
    api.remove(name)  # e.g. the kubelet, restarted meanwhile
    api.outage(False)
    # A bound, not a timing: the backoff is capped well below it.
    wait_for(lambda: len(api.slices) == 1 and name not in api.slices, 15, "the slice back")


def test_backoff_doubles_up_to_a_cap_and_resets() -> None:
    backoff = publisher.Backoff(random.Random(1))  # noqa: S311 - reproducible jitter
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.8 * publisher.INITIAL_BACKOFF <= delays[0] <= 1.2 * publisher.INITIAL_BACKOFF
    # Doubling beats the jitter until the cap.
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[:4]))
    assert max(delays) <= 1.2 * publisher.MAX_BACKOFF
    assert min(delays[-4:]) >= 0.8 * publisher.MAX_BACKOFF
    # The cap keeps a slice missing after an outage away for less than 10 s.
    assert 1.2 * publisher.MAX_BACKOFF < 10
    backoff.reset()
    assert backoff.next_delay() <= 1.2 * publisher.INITIAL_BACKOFF
