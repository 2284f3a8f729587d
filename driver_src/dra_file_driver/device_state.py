"""Prepare and unprepare claims on this node, crash-consistently.

State lives in three places: the checkpoint, one CDI spec per prepared claim,
and the device files. The checkpoint is the only source of truth; the other
two are derived from it and are (re)written after it:

* prepare commits the checkpoint entry first, then writes the CDI spec, then
  rewrites the device files;
* unprepare drops the checkpoint entry first, then deletes the CDI spec, then
  rewrites the device files;
* at start (and after any failed write) ``reconcile`` rewrites every CDI spec
  and device file from the checkpoint and deletes this driver's CDI specs and
  temporary files that no checkpoint entry accounts for.

Each file is replaced atomically, so whatever instant a ``kill -9`` hits, the
disk holds some prefix of that sequence, and the next start brings files and
specs back in line with the checkpoint. A claim the kubelet was told is
prepared is always in the checkpoint, with its CDI spec and device files
written (the answer is sent after the commit that wrote them, also to a
concurrent caller of the same claim), and one it was told is unprepared is
never in it.

State changes are serialized by a thread lock (gRPC serves requests on a
thread pool) and by an flock on a file in the plugin directory, so that a
second driver process on the node (e.g. during a restart overlap) cannot
interleave its changes. The slow part of a prepare, reading the claim from the
API server, runs outside both locks, and changes that queue up while one is
being written are committed together with a single checkpoint write.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import cdi, claims, device_files, names
from .checkpoint import CheckpointError, CheckpointFile
from .claims import ClaimError, ClaimRef, ClaimSource
from .devices import FileDevice
from .prepared import PreparedClaim

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "state.lock"
# How often probe() retries an flock held by another process.
_PROBE_POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class PrepareOutcome:
    """Result for one claim: the prepared claim, or why it could not be prepared."""

    claim: PreparedClaim | None = None
    error: str = ""


@dataclass(eq=False)
class _Change:
    """One caller's state change, queued for the next group commit."""

    prepare: tuple[PreparedClaim, ...] = ()
    # Claims found committed but not yet written: answered from the state
    # once the commit that writes them is done, never re-added.
    awaited: tuple[PreparedClaim, ...] = ()
    unprepare: tuple[str, ...] = ()
    outcomes: dict[str, PrepareOutcome] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    done: bool = False

    def fail(self, message: str, prepared: Collection[str], unprepared: Collection[str]) -> None:
        """Report message for the claims of this change that the failed write covered."""
        for claim in (*self.prepare, *self.awaited):
            if claim.uid in prepared:
                self.outcomes[claim.uid] = PrepareOutcome(error=message)
        for uid in self.unprepare:
            if uid in unprepared:
                self.errors[uid] = message

    def fail_all(self, message: str) -> None:
        self.fail(message, {c.uid for c in (*self.prepare, *self.awaited)}, set(self.unprepare))


class DeviceState:
    def __init__(
        self,
        *,
        driver_name: str,
        node_name: str,
        plugin_dir: Path,
        cdi_dir: Path,
        devices: Sequence[FileDevice],
        shared: bool,
        claim_source: ClaimSource,
    ) -> None:
        self._driver_name = driver_name
        self._node_name = node_name
        self._plugin_dir = plugin_dir
        self._devices = {d.name: d for d in devices}
        self._shared = shared
        self._claim_source = claim_source
        self._checkpoint = CheckpointFile(plugin_dir)
        self._cdi = cdi.SpecDirectory(cdi_dir, driver_name)
        # The pods each device file lists, following _claims.
        self._pod_index = device_files.PodIndex(str(d.path) for d in devices)
        # What the checkpoint holds; changed only under the lock.
        self._claims: dict[str, PreparedClaim] = {}
        # The committed claims whose CDI spec and device files are written:
        # only these are answered without the lock.
        self._ready: Mapping[str, PreparedClaim] = {}
        self._mutex = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Change] = []
        self._lock_fd: int | None = None
        # Set when derived files may disagree with the checkpoint; the next
        # locked operation reconciles before doing anything else.
        self._dirty = True

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Create directories, take the lock file, and reconcile from the checkpoint.

        Raises CheckpointError if the checkpoint is corrupt: starting with an
        empty state instead would forget prepared claims and leak devices.
        """
        self._plugin_dir.mkdir(parents=True, exist_ok=True)
        self._cdi.directory.mkdir(parents=True, exist_ok=True)
        for directory in {d.path.parent for d in self._devices.values()}:
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(
            self._plugin_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        with self._locked():
            log.info(
                "node state reconciled from checkpoint",
                extra={
                    "prepared_claims": len(self._claims),
                    "checkpoint": str(self._checkpoint.path),
                },
            )

    def close(self) -> None:
        with self._mutex:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def prepared_count(self) -> int:
        return len(self._claims)

    # -- operations --------------------------------------------------------

    def prepare(
        self, refs: Sequence[ClaimRef], deadline: float | None = None
    ) -> dict[str, PrepareOutcome]:
        """Prepare each claim; the result has an entry for every distinct UID.

        deadline (a time.monotonic() value) bounds the reading of claims: a
        claim that could not be read by then gets an error naming the timeout,
        and the call returns by the deadline plus the time of its commit.
        Without a deadline each read is bounded by claims.READ_TIMEOUT.

        A success answer means the claim is ready: its CDI spec and device
        files are written. A claim that is committed but not yet written
        (another request is writing it right now) is answered after that
        commit, not before.
        """
        outcomes: dict[str, PrepareOutcome] = {}
        to_fetch: dict[str, ClaimRef] = {}
        being_written: list[PreparedClaim] = []
        try:
            ready, committed = self._current_claims()
        except (OSError, CheckpointError) as exc:
            return {ref.uid: PrepareOutcome(error=f"node state unavailable: {exc}") for ref in refs}
        seen: set[str] = set()
        for ref in refs:
            if ref.uid in seen:
                continue
            seen.add(ref.uid)
            problem = _ref_problem(ref)
            if problem:
                outcomes[ref.uid] = PrepareOutcome(error=problem)
            elif (known := ready.get(ref.uid)) is not None:
                # Idempotent repeat (kubelet restart, retry after a failure
                # elsewhere): same answer, nothing touched.
                outcomes[ref.uid] = PrepareOutcome(claim=known)
            elif (pending := committed.get(ref.uid)) is not None:
                # Committed by a request that is writing its files now: wait
                # for that commit (or a reconcile) to have written them.
                being_written.append(pending)
            else:
                to_fetch[ref.uid] = ref

        resolved = self._fetch(to_fetch.values(), deadline, outcomes)
        if resolved or being_written:
            change = _Change(prepare=tuple(resolved), awaited=tuple(being_written))
            self._commit(change)
            outcomes.update(change.outcomes)
        return outcomes

    def probe(self, timeout: float) -> bool:
        """True if the state lock (thread mutex and flock) can be taken within timeout.

        For a liveness check: a wedged lock stops every state change, so the
        driver is not alive even if its sockets answer. Reconciles nothing
        and writes nothing.
        """
        deadline = time.monotonic() + timeout
        if self._lock_fd is None or not self._mutex.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            # flock has no timeout: try it without blocking until the deadline.
            while True:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    time.sleep(min(_PROBE_POLL_INTERVAL, remaining))
                    continue
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                return True
        finally:
            self._mutex.release()

    def unprepare(self, refs: Sequence[ClaimRef]) -> dict[str, str]:
        """Unprepare each claim from the checkpoint alone; uid -> error ("" = done).

        Unknown UIDs succeed: the claim was never prepared here, or an earlier
        unprepare already finished.
        """
        change = _Change(unprepare=tuple(dict.fromkeys(ref.uid for ref in refs)))
        self._commit(change)
        return change.errors

    # -- internals ---------------------------------------------------------

    def _fetch(
        self,
        refs: Iterable[ClaimRef],
        deadline: float | None,
        outcomes: dict[str, PrepareOutcome],
    ) -> list[PreparedClaim]:
        """Read and check each claim, one after the other, within deadline.

        Sequential on purpose: the kubelet sends the claims of one pod, nearly
        always one, so threads would add cost to every call and save nothing;
        and when the API server hangs, every read waits alike, so reading in
        parallel would not get more claims through. Each read gets the time
        left; once none is left, the remaining claims fail without a request.
        Problems go into outcomes; the usable claims are returned.
        """
        resolved = []
        for ref in refs:
            if deadline is None:
                timeout = claims.READ_TIMEOUT
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    outcomes[ref.uid] = PrepareOutcome(
                        error=f"claim {ref}: not read: the request's deadline passed "
                        "(timed out waiting for the API server); the kubelet retries"
                    )
                    continue
            try:
                obj = self._claim_source.get(ref, timeout)
                resolved.append(
                    claims.resolve_claim(
                        obj, ref, self._driver_name, self._node_name, self._devices
                    )
                )
            except ClaimError as exc:
                outcomes[ref.uid] = PrepareOutcome(error=str(exc))
        return resolved

    def _commit(self, change: _Change) -> None:
        """Apply change together with whatever other changes are waiting (group commit).

        Every state change rewrites the checkpoint with a flush to disk, which
        dominates its cost. Callers queue their change and then take the
        lock; whoever gets it commits every queued change with one checkpoint
        write and one rewrite per touched device file, so N concurrent
        requests cost about one write instead of N.
        """
        with self._queue_lock:
            self._queue.append(change)
        try:
            with self._locked():
                if change.done:  # committed by the previous lock holder
                    return
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._apply(batch)
        except (OSError, CheckpointError) as exc:
            # Only reconciling in _locked() raises here, before this caller
            # took the queue, so the change is still queued: withdraw it.
            with self._queue_lock:
                if change in self._queue:
                    self._queue.remove(change)
            if not change.done:
                change.fail_all(f"node state unavailable: {exc}")

    def _apply(self, batch: Sequence[_Change]) -> None:
        """Commit a batch of changes: checkpoint first, then the derived files."""
        claims, added, removed = self._plan(batch)
        if not added and not removed:
            return
        if removed:
            # Stop answering for claims on their way out before their files go.
            self._ready = {uid: c for uid, c in self._ready.items() if uid not in removed}
        try:
            self._checkpoint.commit(claims.values(), list(added.values()), removed.keys())
        except OSError as exc:
            for change in batch:
                change.fail(f"cannot update node state: {exc}", added.keys(), removed.keys())
            return
        self._claims = claims
        for claim in removed.values():
            self._pod_index.remove(claim)
        for claim in added.values():
            self._pod_index.add(claim)
        try:
            for claim in added.values():
                self._cdi.write(claim)
            for uid in removed:
                self._cdi.remove(uid)
            self._write_device_files(_device_paths([*added.values(), *removed.values()]))
        except OSError as exc:
            # The checkpoint has the change; the next locked operation
            # reconciles the files before anything else.
            self._dirty = True
            for change in batch:
                change.fail(f"cannot update node state: {exc}", added.keys(), removed.keys())
            return
        self._ready = claims
        _log_changes(list(added.values()), list(removed.values()))

    def _plan(
        self, batch: Sequence[_Change]
    ) -> tuple[dict[str, PreparedClaim], dict[str, PreparedClaim], dict[str, PreparedClaim]]:
        """Apply the batch in memory, in order, and record each caller's result.

        Returns the new claims, and the claims added to and removed from disk.
        """
        claims = dict(self._claims)
        # Who holds each device: only exclusive mode asks (O(claims) to build).
        holders = {} if self._shared else {d.device: c for c in claims.values() for d in c.devices}
        added: dict[str, PreparedClaim] = {}
        removed: dict[str, PreparedClaim] = {}
        for change in batch:
            change.done = True
            for claim in change.awaited:
                if (known := claims.get(claim.uid)) is not None:
                    change.outcomes[claim.uid] = PrepareOutcome(claim=known)
                else:
                    change.outcomes[claim.uid] = PrepareOutcome(
                        error=f"claim {claim.namespace}/{claim.name} was unprepared while this "
                        "prepare waited for its files; the kubelet retries"
                    )
            for claim in change.prepare:
                if (known := claims.get(claim.uid)) is not None:
                    # Prepared by a concurrent request while this one fetched.
                    change.outcomes[claim.uid] = PrepareOutcome(claim=known)
                    continue
                conflict = None if self._shared else _conflict(claim, holders)
                if conflict:
                    change.outcomes[claim.uid] = PrepareOutcome(error=conflict)
                    continue
                claims[claim.uid] = added[claim.uid] = claim
                holders.update((d.device, claim) for d in claim.devices)
                change.outcomes[claim.uid] = PrepareOutcome(claim=claim)
            for uid in change.unprepare:
                change.errors[uid] = ""
                gone = claims.pop(uid, None)
                if gone is None:
                    continue
                for d in gone.devices:
                    holders.pop(d.device, None)
                # Prepared and unprepared within this batch: never on disk.
                if added.pop(uid, None) is None:
                    removed[uid] = gone
        return claims, added, removed

    def _current_claims(
        self,
    ) -> tuple[Mapping[str, PreparedClaim], Mapping[str, PreparedClaim]]:
        """The ready and the committed claims, without waiting for a commit in progress.

        Both mappings are replaced, never modified, so reading the references
        is safe without a lock; ready is read first, and a commit publishes
        to committed before ready, so a claim found ready is also committed.
        Only when the files may disagree with the checkpoint (a failed write,
        or another process changed it) does this take the lock and reconcile
        first. A commit racing with the read makes it look as if the read
        came first, which is harmless: a claim found missing is fetched and
        then found prepared at commit time.
        """
        if self._dirty or self._checkpoint.changed_on_disk():
            with self._locked():
                return self._ready, self._claims
        ready = self._ready
        return ready, self._claims

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_fd is None:
            raise RuntimeError("DeviceState.start() was not called")
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if self._dirty or self._checkpoint.changed_on_disk():
                    self._reconcile()
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _reconcile(self) -> None:
        """Make CDI specs and device files agree with the checkpoint on disk."""
        self._claims = {c.uid: c for c in self._checkpoint.load()}
        self._pod_index.reset(self._claims.values())
        file_dirs = {Path(p).parent for p in self._pod_index.paths()}
        leftovers = [
            *self._checkpoint.leftover_temp_files(),
            *self._cdi.leftover_temp_files(),
            *(t for d in file_dirs for t in device_files.leftover_temp_files(d)),
        ]
        for tmp in leftovers:
            log.info("removing leftover temporary file", extra={"path": str(tmp)})
            tmp.unlink(missing_ok=True)
        for uid in self._cdi.claim_uids() - self._claims.keys():
            log.info("removing CDI spec of unprepared claim", extra={"claim_uid": uid})
            self._cdi.remove(uid)
        for claim in self._claims.values():
            if self._cdi.write(claim):
                log.info("restored CDI spec", extra={"claim_uid": claim.uid})
        self._write_device_files(None)
        self._ready = self._claims
        self._dirty = False

    def _write_device_files(self, paths: Iterable[str] | None) -> None:
        """Rewrite the given device files (all if None) from the prepared claims."""
        for path in self._pod_index.paths() if paths is None else paths:
            device_files.write(Path(path), self._pod_index.pods(path))


def _log_changes(added: Sequence[PreparedClaim], removed: Sequence[PreparedClaim]) -> None:
    if added:
        log.info(
            "claims prepared",
            extra={
                "claims": [f"{c.namespace}/{c.name}" for c in added],
                "pods": sorted({p for c in added for p in c.pods}),
            },
        )
    if removed:
        log.info(
            "claims unprepared", extra={"claims": [f"{c.namespace}/{c.name}" for c in removed]}
        )


def _conflict(claim: PreparedClaim, holders: Mapping[str, PreparedClaim]) -> str | None:
    """Why claim cannot have its devices in exclusive mode, or None.

    The scheduler never allocates an exclusive device twice; this is the
    last line of defense against a stale or forged allocation.
    """
    for device in claim.devices:
        other = holders.get(device.device)
        if other is not None:
            return (
                f"claim {claim.namespace}/{claim.name}: device {device.device} is already "
                f"prepared for claim {other.namespace}/{other.name} (UID {other.uid}) and "
                "this driver does not share devices (start it with --shared to allow that)"
            )
    return None


def _ref_problem(ref: ClaimRef) -> str | None:
    problem = names.uid_error(ref.uid)
    if problem:
        return f"claim {ref} has an unusable UID {ref.uid!r}: {problem}"
    if not ref.namespace or not ref.name:
        return f"claim with UID {ref.uid} lacks a namespace or name"
    return None


def _device_paths(prepared: Iterable[PreparedClaim]) -> set[str]:
    return {d.path for claim in prepared for d in claim.devices}
