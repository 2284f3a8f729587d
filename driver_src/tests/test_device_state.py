"""Prepare/unprepare orchestration, in process, with a fake claim source."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dra_file_driver import atomicfile, cdi, checkpoint, claims, device_files, device_state
from dra_file_driver.checkpoint import CheckpointError
from dra_file_driver.claims import ClaimError, ClaimRef
from dra_file_driver.device_state import DeviceState
from dra_file_driver.devices import inventory
from dra_file_driver.prepared import PreparedClaim, PreparedDevice

from .driver_testkit import (
    DRIVER,
    NODE,
    FakeClaimSource,
    NodeDirs,
    assert_consistent,
    claim_object,
    file_lines,
    new_uid,
    result,
    wait_for,
)

FILE_COUNT = 3

MakeState = Callable[..., DeviceState]


def new_state(dirs: NodeDirs, claims: FakeClaimSource, shared: bool) -> DeviceState:
    """A node's state as a driver process builds it, not started yet."""
    return DeviceState(
        driver_name=DRIVER,
        node_name=NODE,
        plugin_dir=dirs.plugin_dir,
        cdi_dir=dirs.cdi_dir,
        devices=inventory(dirs.file_dir, FILE_COUNT),
        shared=shared,
        claim_source=claims,
    )


@pytest.fixture
def dirs(tmp_path: Path) -> NodeDirs:
    return NodeDirs(tmp_path / "plugin", tmp_path / "cdi", tmp_path / "files")


@pytest.fixture
def make_state(dirs: NodeDirs, fake_claims: FakeClaimSource) -> Iterator[MakeState]:
    states: list[DeviceState] = []

    def make(shared: bool = False, start: bool = True) -> DeviceState:
        state = new_state(dirs, fake_claims, shared)
        states.append(state)
        if start:
            state.start()
        return state

    yield make
    for state in states:
        state.close()


def add_claim(
    fake: FakeClaimSource, devices: list[str], pods: list[str], **kwargs: Any
) -> ClaimRef:
    uid = new_uid()
    name = kwargs.pop("name", f"claim-{uid[:8]}")
    claim = fake.add(
        claim_object(
            namespace="ns",
            name=name,
            uid=uid,
            results=kwargs.pop(
                "results", [result(d, request=f"r{i}") for i, d in enumerate(devices)]
            ),
            pods=pods,
            **kwargs,
        )
    )
    return ClaimRef(claim.namespace, claim.name, claim.uid)


def test_start_creates_empty_device_files(make_state: MakeState, dirs: NodeDirs) -> None:
    make_state()
    for i in range(1, FILE_COUNT + 1):
        assert (dirs.file_dir / f"file{i}").read_bytes() == b""
    assert_consistent(dirs, FILE_COUNT)


def test_prepare_writes_checkpoint_cdi_spec_and_file(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file2"], ["pod-a", "pod-b"])
    outcome = state.prepare([ref])[ref.uid]
    assert outcome.error == ""
    assert outcome.claim is not None
    assert [(d.request, d.pool, d.device) for d in outcome.claim.devices] == [("r0", NODE, "file2")]
    assert file_lines(dirs.file_dir / "file2") == ["pod-a", "pod-b"]
    spec = json.loads(cdi.SpecDirectory(dirs.cdi_dir, DRIVER).path(ref.uid).read_text())
    assert spec["devices"][0]["name"] == f"{ref.uid}-file2"
    claims = assert_consistent(dirs, FILE_COUNT)
    assert [c.uid for c in claims] == [ref.uid]


def test_repeated_prepare_returns_same_answer_without_api_or_file_write(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])
    first = state.prepare([ref])[ref.uid]
    gets, inode = fake_claims.gets, (dirs.file_dir / "file1").stat().st_ino
    fake_claims.delete(ref)  # a repeat must not even need the claim
    again = state.prepare([ref, ref])
    assert again == {ref.uid: first}
    assert fake_claims.gets == gets
    assert (dirs.file_dir / "file1").stat().st_ino == inode


def test_unprepare_removes_names_spec_and_entry(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])
    state.prepare([ref])
    fake_claims.delete(ref)  # unprepare works from the checkpoint alone
    unknown = ClaimRef("ns", "never-prepared", new_uid())
    assert state.unprepare([ref, unknown]) == {ref.uid: "", unknown.uid: ""}
    assert file_lines(dirs.file_dir / "file1") == []
    assert assert_consistent(dirs, FILE_COUNT) == []
    assert state.unprepare([ref]) == {ref.uid: ""}


def test_exclusive_device_is_refused_to_a_second_claim(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    first = add_claim(fake_claims, ["file1"], ["pod-a"], name="first")
    second = add_claim(fake_claims, ["file1"], ["pod-b"], name="second")
    assert state.prepare([first])[first.uid].error == ""
    error = state.prepare([second])[second.uid].error
    assert "device file1 is already prepared for claim ns/first" in error
    assert file_lines(dirs.file_dir / "file1") == ["pod-a"]
    assert [c.uid for c in assert_consistent(dirs, FILE_COUNT)] == [first.uid]


def test_exclusive_conflict_within_one_request(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    first = add_claim(fake_claims, ["file1"], ["pod-a"])
    second = add_claim(fake_claims, ["file1"], ["pod-b"])
    outcomes = state.prepare([first, second])
    assert outcomes[first.uid].error == ""
    assert "already prepared" in outcomes[second.uid].error


def test_shared_device_lists_every_pod_once(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state(shared=True)
    a = add_claim(fake_claims, ["file1"], ["pod-a", "pod-both"])
    b = add_claim(fake_claims, ["file1", "file1"], ["pod-both", "pod-b"])
    outcomes = state.prepare([a, b])
    assert all(o.error == "" for o in outcomes.values())
    assert file_lines(dirs.file_dir / "file1") == ["pod-a", "pod-both", "pod-b"]
    spec = json.loads(cdi.SpecDirectory(dirs.cdi_dir, DRIVER).path(b.uid).read_text())
    assert [d["name"] for d in spec["devices"]] == [f"{b.uid}-file1"]

    assert state.unprepare([a]) == {a.uid: ""}
    assert file_lines(dirs.file_dir / "file1") == ["pod-both", "pod-b"]
    assert_consistent(dirs, FILE_COUNT)


def test_bad_claim_is_rejected_while_others_in_the_request_proceed(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    good = add_claim(fake_claims, ["file1"], ["pod-a"])
    bad_pod = add_claim(fake_claims, ["file2"], ["evil\npod"])
    missing = ClaimRef("ns", "missing", new_uid())
    bad_uid = ClaimRef("ns", "x", "../../etc")
    outcomes = state.prepare([good, bad_pod, missing, bad_uid])
    assert outcomes[good.uid].error == ""
    assert "not a valid Kubernetes name" in outcomes[bad_pod.uid].error
    assert outcomes[missing.uid].error == "claim ns/missing does not exist"
    assert "unusable UID" in outcomes[bad_uid.uid].error
    assert file_lines(dirs.file_dir / "file2") == []
    assert [c.uid for c in assert_consistent(dirs, FILE_COUNT)] == [good.uid]


def test_claims_survive_a_restart(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    old = make_state()
    ref = add_claim(fake_claims, ["file3"], ["pod-a"])
    answer = old.prepare([ref])[ref.uid]
    old.close()
    fake_claims.delete(ref)

    new = make_state()
    assert new.prepare([ref])[ref.uid] == answer
    assert new.unprepare([ref]) == {ref.uid: ""}
    assert file_lines(dirs.file_dir / "file3") == []
    assert assert_consistent(dirs, FILE_COUNT) == []


def test_start_repairs_files_specs_and_removes_leftovers(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    kept = add_claim(fake_claims, ["file1"], ["pod-a"])
    state.prepare([kept])
    state.close()
    specs = cdi.SpecDirectory(dirs.cdi_dir, DRIVER)
    # What a crash can leave behind: a damaged or missing derived file, a
    # spec of a claim that never made it into the checkpoint, temp files.
    (dirs.file_dir / "file1").write_text("garbage\n")
    (dirs.file_dir / "file2").unlink()
    specs.path(kept.uid).unlink()
    specs.write(
        PreparedClaim(
            "orphan-uid", "ns", "orphan", ("p",), (PreparedDevice("r", NODE, "file2", "/x"),)
        )
    )
    foreign = dirs.cdi_dir / "vendor.example.com-gpu_1.json"
    foreign.write_text("{}")
    for directory, target in [
        (dirs.plugin_dir, checkpoint.FILE_NAME),
        (dirs.cdi_dir, cdi.spec_file_name(DRIVER, "x")),
        (dirs.file_dir, "file1"),
    ]:
        (directory / f"{atomicfile.temp_prefix(target)}zz").write_text("partial")

    make_state()
    assert file_lines(dirs.file_dir / "file1") == ["pod-a"]
    assert [c.uid for c in assert_consistent(dirs, FILE_COUNT)] == [kept.uid]
    assert foreign.exists()


def test_corrupt_checkpoint_stops_start(make_state: MakeState, dirs: NodeDirs) -> None:
    dirs.plugin_dir.mkdir(parents=True)
    (dirs.plugin_dir / checkpoint.FILE_NAME).write_text(
        '{"version": 1, "claims": [], "checksum": "x"}'
    )
    with pytest.raises(CheckpointError, match="fails its checksum"):
        make_state()


def test_write_failure_after_commit_is_reported_and_repaired(
    make_state: MakeState,
    dirs: NodeDirs,
    fake_claims: FakeClaimSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])
    real_write = cdi.SpecDirectory.write
    calls = 0

    def failing_once(self: cdi.SpecDirectory, claim: PreparedClaim) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(28, "No space left on device")
        return real_write(self, claim)

    monkeypatch.setattr(cdi.SpecDirectory, "write", failing_once)
    assert "No space left" in state.prepare([ref])[ref.uid].error
    # The kubelet retries; the claim is in the checkpoint, the state is
    # repaired first, and the same answer comes back.
    retry = state.prepare([ref])[ref.uid]
    assert retry.error == ""
    assert file_lines(dirs.file_dir / "file1") == ["pod-a"]
    assert_consistent(dirs, FILE_COUNT)


def test_checkpoint_write_failure_changes_nothing(
    make_state: MakeState,
    dirs: NodeDirs,
    fake_claims: FakeClaimSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])

    def no_space(self: checkpoint.CheckpointFile, *change: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.CheckpointFile, "commit", no_space)
    assert "No space left" in state.prepare([ref])[ref.uid].error
    monkeypatch.undo()
    assert file_lines(dirs.file_dir / "file1") == []
    assert assert_consistent(dirs, FILE_COUNT) == []


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


def count_writes(
    monkeypatch: pytest.MonkeyPatch, crash_at: int | None, *, torn: bool = False
) -> list[int]:
    """Count file operations; raise SimulatedCrash before operation crash_at.

    torn: if operation crash_at is a checkpoint append, half of its line is
    written first, as a crash in the middle of the write leaves it. Returns
    [operations so far, lines torn].
    """
    counter = [0, 0]
    real_write, real_remove = atomicfile.write_atomically, atomicfile.remove
    real_append = atomicfile.append_durably

    def step() -> None:
        counter[0] += 1
        if crash_at is not None and counter[0] == crash_at:
            raise SimulatedCrash

    def write(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
        step()
        real_write(path, data, mode, durable=durable)

    def remove(path: Path, *, durable: bool = True) -> bool:
        step()
        return real_remove(path, durable=durable)

    def append(path: Path, data: bytes) -> tuple[int, int, int]:
        if torn and crash_at is not None and counter[0] + 1 == crash_at:
            with path.open("ab") as f:
                f.write(data[: len(data) // 2])
            counter[1] += 1
        step()
        return real_append(path, data)

    monkeypatch.setattr(atomicfile, "write_atomically", write)
    monkeypatch.setattr(atomicfile, "remove", remove)
    monkeypatch.setattr(atomicfile, "append_durably", append)
    return counter


@pytest.mark.parametrize(("shared", "torn"), [(False, False), (True, False), (False, True)])
def test_crash_at_every_step_leaves_a_state_the_next_start_makes_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool, torn: bool
) -> None:
    def scenario(state: DeviceState, fake: FakeClaimSource) -> None:
        a = add_claim(fake, ["file1"], ["pod-a"], name="a")
        b = add_claim(fake, ["file2", "file1" if shared else "file3"], ["pod-b"], name="b")
        state.prepare([a])
        state.prepare([b])
        state.unprepare([a])
        c = add_claim(fake, ["file1"], ["pod-c"], name="c")
        state.prepare([c])
        state.unprepare([b, c])

    def run(base: Path, crash_at: int | None) -> list[int]:
        fake = FakeClaimSource()
        dirs = NodeDirs(base / "plugin", base / "cdi", base / "files")

        state = new_state(dirs, fake, shared)
        state.start()
        with monkeypatch.context() as m:
            counter = count_writes(m, crash_at, torn=torn)
            with contextlib.suppress(SimulatedCrash):
                scenario(state, fake)
        state.close()  # the dead process's lock goes away with it
        restarted = new_state(dirs, fake, shared)
        restarted.start()
        claims = assert_consistent(dirs, FILE_COUNT)
        # Whatever survived can still be unprepared by the new process.
        restarted.unprepare([ClaimRef(c.namespace, c.name, c.uid) for c in claims])
        assert assert_consistent(dirs, FILE_COUNT) == []
        restarted.close()
        return counter

    total = run(tmp_path / "full", None)[0]
    assert total >= 12  # checkpoint, spec and file writes for 5 operations
    torn_lines = sum(run(tmp_path / f"crash-{n}", n)[1] for n in range(1, total + 1))
    # Every change after the first snapshot is an append: 4 of the 5.
    assert torn_lines == (4 if torn else 0)


def test_concurrent_prepares_and_unprepares_lose_no_line(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state(shared=True)
    refs = [add_claim(fake_claims, ["file1"], [f"pod-{i}"]) for i in range(40)]
    state.prepare(refs[:20])
    errors: list[str] = []

    def prepare(ref: ClaimRef) -> None:
        errors.extend(o.error for o in state.prepare([ref]).values() if o.error)

    def unprepare(ref: ClaimRef) -> None:
        errors.extend(e for e in state.unprepare([ref]).values() if e)

    threads = [threading.Thread(target=prepare, args=(r,)) for r in refs[20:]]
    threads += [threading.Thread(target=unprepare, args=(r,)) for r in refs[:10]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(file_lines(dirs.file_dir / "file1")) == sorted(f"pod-{i}" for i in range(10, 40))
    assert_consistent(dirs, FILE_COUNT)


def test_two_instances_on_one_node_share_the_checkpoint(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    first, second = make_state(), make_state()
    a = add_claim(fake_claims, ["file1"], ["pod-a"])
    b = add_claim(fake_claims, ["file1"], ["pod-b"])
    c = add_claim(fake_claims, ["file2"], ["pod-c"])
    assert first.prepare([a])[a.uid].error == ""
    # The second instance sees the first one's claim before deciding.
    assert "already prepared" in second.prepare([b])[b.uid].error
    assert second.prepare([c])[c.uid].error == ""
    assert first.unprepare([c]) == {c.uid: ""}
    assert [x.uid for x in assert_consistent(dirs, FILE_COUNT)] == [a.uid]


def test_concurrent_changes_share_checkpoint_writes(
    make_state: MakeState,
    dirs: NodeDirs,
    fake_claims: FakeClaimSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = make_state(shared=True)
    refs = [add_claim(fake_claims, ["file1"], [f"pod-{i}"]) for i in range(20)]
    saves = 0
    first_save_started, release = threading.Event(), threading.Event()
    real_commit = checkpoint.CheckpointFile.commit

    def slow_first_save(self: checkpoint.CheckpointFile, *change: Any) -> None:
        nonlocal saves
        saves += 1
        if saves == 1:
            first_save_started.set()
            release.wait(30)
        real_commit(self, *change)

    monkeypatch.setattr(checkpoint.CheckpointFile, "commit", slow_first_save)
    results: dict[str, str] = {}

    def prepare(ref: ClaimRef) -> None:
        results.update({uid: o.error for uid, o in state.prepare([ref]).items()})

    first = threading.Thread(target=prepare, args=(refs[0],))
    first.start()
    assert first_save_started.wait(30)
    others = [threading.Thread(target=prepare, args=(r,)) for r in refs[1:]]
    for t in others:
        t.start()
    # Each waiting caller has queued its change before it waits for the lock.
    wait_for(lambda: len(state._queue) == len(others), 30, "all changes to queue")
    release.set()
    for t in [first, *others]:
        t.join()
    assert results == {r.uid: "" for r in refs}
    assert saves == 2  # the first change alone, then the 19 queued ones together
    assert sorted(file_lines(dirs.file_dir / "file1")) == sorted(f"pod-{i}" for i in range(20))
    assert_consistent(dirs, FILE_COUNT)


class SlowClaimSource:
    """The fake claim source, with reads that take as long as delay() says."""

    def __init__(self, fake: FakeClaimSource, delay: Callable[[ClaimRef], float]) -> None:
        self._fake = fake
        self._delay = delay
        self.timeouts: list[tuple[str, float]] = []

    def get(self, ref: ClaimRef, timeout: float) -> Mapping[str, Any]:
        self.timeouts.append((ref.name, timeout))
        delay = self._delay(ref)
        if delay > timeout:
            # What the API client does when its request timeout expires.
            time.sleep(timeout)
            raise ClaimError(f"cannot read claim {ref}: timed out after {timeout:.2f} s")
        time.sleep(delay)
        return self._fake.get(ref, timeout)


def test_every_success_answer_comes_after_the_claims_files_are_written(
    dirs: NodeDirs, fake_claims: FakeClaimSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same-claim prepares racing (two pods sharing a claim, a kubelet retry).

    The kubelet hands the CDI ID to the runtime as soon as it has the answer,
    so at the moment any caller gets success the spec must exist and the
    device file must list the pod. Callers arrive staggered so that some come
    while the first commit is still writing the claim's files (slowed here).
    """
    source = SlowClaimSource(fake_claims, lambda ref: 0.002)
    state = DeviceState(
        driver_name=DRIVER,
        node_name=NODE,
        plugin_dir=dirs.plugin_dir,
        cdi_dir=dirs.cdi_dir,
        devices=inventory(dirs.file_dir, FILE_COUNT),
        shared=True,
        claim_source=source,
    )
    state.start()
    real_spec_write, real_file_write = cdi.SpecDirectory.write, device_files.write

    def slow_spec_write(self: cdi.SpecDirectory, claim: PreparedClaim) -> bool:
        time.sleep(0.004)
        return real_spec_write(self, claim)

    def slow_file_write(path: Path, pods: Any) -> bool:
        time.sleep(0.004)
        return real_file_write(path, pods)

    monkeypatch.setattr(cdi.SpecDirectory, "write", slow_spec_write)
    monkeypatch.setattr(device_files, "write", slow_file_write)
    specs = cdi.SpecDirectory(dirs.cdi_dir, DRIVER)
    callers, rounds = 12, 25
    answers: list[str] = []  # "ok", or what was missing when success came
    answers_lock = threading.Lock()

    def prepare(ref: ClaimRef, pod: str, start: threading.Barrier, stagger: float) -> None:
        start.wait()
        time.sleep(stagger)
        outcome = state.prepare([ref])[ref.uid]
        # Checked at once, before anything else can finish the job.
        missing = [
            *([] if specs.path(ref.uid).exists() else ["spec"]),
            *([] if pod in file_lines(dirs.file_dir / "file1") else ["pod name"]),
        ]
        with answers_lock:
            answers.append(
                outcome.error or (" and ".join(missing) + " missing" if missing else "ok")
            )

    for round_ in range(rounds):
        pod = f"pod-{round_}"
        ref = add_claim(fake_claims, ["file1"], [pod])
        start = threading.Barrier(callers)
        threads = [
            threading.Thread(target=prepare, args=(ref, pod, start, i * 0.0015))
            for i in range(callers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    state.close()
    assert answers == ["ok"] * (callers * rounds), collections.Counter(answers)
    assert_consistent(dirs, FILE_COUNT)


def test_claims_not_read_by_the_deadline_get_a_timeout_error(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    hanging = add_claim(fake_claims, ["file1"], ["pod-a"], name="hanging")
    late = add_claim(fake_claims, ["file2"], ["pod-b"], name="late")
    known = add_claim(fake_claims, ["file3"], ["pod-c"], name="known")
    source = SlowClaimSource(fake_claims, lambda ref: 3600.0 if ref.name == "hanging" else 0.0)
    state = DeviceState(
        driver_name=DRIVER,
        node_name=NODE,
        plugin_dir=dirs.plugin_dir,
        cdi_dir=dirs.cdi_dir,
        devices=inventory(dirs.file_dir, FILE_COUNT),
        shared=False,
        claim_source=source,
    )
    state.start()
    assert state.prepare([known])[known.uid].error == ""
    assert source.timeouts == [("known", claims.READ_TIMEOUT)]  # no deadline: the default

    budget = 0.3
    outcomes = state.prepare([hanging, late, known], deadline=time.monotonic() + budget)
    state.close()
    # The hanging read got the time that was left, no more; the claim after
    # it was not read at all; the prepared one needed no read.
    ((name, timeout),) = source.timeouts[1:]
    assert name == "hanging"
    assert 0 < timeout <= budget
    assert "timed out" in outcomes[hanging.uid].error
    assert "deadline passed (timed out" in outcomes[late.uid].error
    assert outcomes[known.uid].error == ""
    assert [c.uid for c in assert_consistent(dirs, FILE_COUNT)] == [known.uid]


def test_a_passed_deadline_reads_nothing_but_still_answers_prepared_claims(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    known = add_claim(fake_claims, ["file1"], ["pod-a"])
    new = add_claim(fake_claims, ["file2"], ["pod-b"])
    answer = state.prepare([known])[known.uid]
    gets = fake_claims.gets
    outcomes = state.prepare([known, new], deadline=time.monotonic() - 1)
    assert outcomes[known.uid] == answer
    assert "deadline passed" in outcomes[new.uid].error
    assert fake_claims.gets == gets


def test_probe_sees_a_lock_held_by_another_process(make_state: MakeState, dirs: NodeDirs) -> None:
    state = make_state()
    assert state.probe(1.0)
    # Another open file description of the lock file stands for another
    # process (flock locks belong to the open file, not the thread).
    other = os.open(dirs.plugin_dir / device_state.LOCK_FILE_NAME, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        assert not state.probe(0.2)
        fcntl.flock(other, fcntl.LOCK_UN)
        assert state.probe(1.0)
    finally:
        os.close(other)


def test_probe_sees_a_commit_that_does_not_finish(
    make_state: MakeState,
    fake_claims: FakeClaimSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])
    saving, release = threading.Event(), threading.Event()
    real_commit = checkpoint.CheckpointFile.commit

    def stuck_save(self: checkpoint.CheckpointFile, *change: Any) -> None:
        saving.set()
        release.wait(30)
        real_commit(self, *change)

    monkeypatch.setattr(checkpoint.CheckpointFile, "commit", stuck_save)
    worker = threading.Thread(target=state.prepare, args=([ref],))
    worker.start()
    try:
        assert saving.wait(30)
        assert not state.probe(0.2)
    finally:
        release.set()
        worker.join()
    assert state.probe(1.0)


def test_probe_of_a_state_that_was_not_started_fails(
    dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    assert not new_state(dirs, fake_claims, shared=False).probe(0.1)


def test_a_claim_reserved_for_no_pod_is_not_prepared(
    make_state: MakeState, dirs: NodeDirs, fake_claims: FakeClaimSource
) -> None:
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], [])
    assert "is not reserved for any pod" in state.prepare([ref])[ref.uid].error
    assert file_lines(dirs.file_dir / "file1") == []
    assert assert_consistent(dirs, FILE_COUNT) == []


def test_a_claim_unprepared_while_a_prepare_waits_for_its_files_is_not_brought_back(
    make_state: MakeState,
    dirs: NodeDirs,
    fake_claims: FakeClaimSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prepare that found the claim committed but unwritten waits; if an
    unprepare gets in first, that prepare fails instead of re-adding the claim
    from what it saw before."""
    state = make_state()
    ref = add_claim(fake_claims, ["file1"], ["pod-a"])
    writing, release = threading.Event(), threading.Event()
    real_spec_write = cdi.SpecDirectory.write

    def held_spec_write(self: cdi.SpecDirectory, claim: PreparedClaim) -> bool:
        writing.set()
        release.wait(30)
        return real_spec_write(self, claim)

    monkeypatch.setattr(cdi.SpecDirectory, "write", held_spec_write)
    answers: dict[str, Any] = {}
    first = threading.Thread(target=lambda: answers.update(first=state.prepare([ref])))
    first.start()
    assert writing.wait(30)  # committed, its spec not yet written
    unprepare = threading.Thread(target=lambda: answers.update(unprepare=state.unprepare([ref])))
    unprepare.start()
    wait_for(lambda: len(state._queue) == 1, 30, "the unprepare to queue")
    second = threading.Thread(target=lambda: answers.update(second=state.prepare([ref])))
    second.start()
    wait_for(lambda: len(state._queue) == 2, 30, "the second prepare to queue")
    release.set()
    for t in (first, unprepare, second):
        t.join()
    assert answers["first"][ref.uid].error == ""
    assert answers["unprepare"] == {ref.uid: ""}
    assert "was unprepared while this prepare waited" in answers["second"][ref.uid].error
    assert fake_claims.gets == 1  # the waiting prepare did not read the claim again
    assert assert_consistent(dirs, FILE_COUNT) == []
