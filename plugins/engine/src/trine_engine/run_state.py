"""A run as the engine holds it in memory, and the cache of those runs.

Every non-final run lives here whole (run, journal, events, step attempts, kept signals), so
dispatch, replay and SSE resume never read RocksDB on the hot path; so do the most recently
finished runs, in an LRU. A miss (an old finished run) is read from RocksDB and joins the LRU.

Messages stored here are never mutated after they are stored: a change builds a new ``Run``
(``dataclasses.replace``), so a ``Run`` handed to an in-process caller never changes under it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from trine_engine import retention
from trine_engine.storage import Store
from trine_engine.storage.keys import (
    ACTIVE,
    ATTEMPTS,
    EVENTS,
    JOURNAL,
    RUNS,
    SIGNALS,
    decode_u32,
    row_number,
    run_prefix,
)
from trine_proto.codec import decode
from trine_proto.trine.engine.v1 import KeptSignal
from trine_proto.trine.v1 import Event, JournalEntry, Run, RunStatus, Wait
from trine_proto.vocabulary import FINAL_STATUSES

if TYPE_CHECKING:
    from trine_engine.leases import Lease


STATE_OVERHEAD_BYTES = 2048
"""What a finished run costs in memory besides its payloads (objects, ids, timestamps): a
rough figure, so that many small runs count too."""


def footprint(state: RunState) -> int:
    """About what ``state`` holds in memory: its payloads (input, result, error, journal entries'
    outputs and errors, events' data) plus :data:`STATE_OVERHEAD_BYTES` per run, journal entry
    and event. Computed once, when a finished run enters the LRU (it does not change there)."""
    run = state.run
    size = STATE_OVERHEAD_BYTES + len(run.input) + len(run.result)
    if run.error is not None:
        size += len(run.error.message) + len(run.error.traceback)
    for entry in state.journal:
        size += STATE_OVERHEAD_BYTES // 8 + len(entry.output)
        if entry.error is not None:
            size += len(entry.error.message) + len(entry.error.traceback)
    for event in state.events:
        size += STATE_OVERHEAD_BYTES // 8 + len(event.data)
    return size


@dataclasses.dataclass(eq=False)
class RunState:
    run: Run
    journal: list[JournalEntry] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    step_attempts: dict[int, int] = dataclasses.field(default_factory=dict)
    """Failed attempts by step index (rows of ``attempts`` while the run is active)."""
    durable_run: Run | None = None
    """The run as of its last durable commit: what readers see (None until it is created)."""
    durable_journal: int = 0
    """How many journal entries are durable."""
    lease: Lease | None = None
    ending_lease: Lease | None = None
    """A lease a record ended (finish, retry, cancel) whose record is not durable yet: readers
    keep seeing the run ``running`` until the new state is durable."""
    finished_lease_id: str = ""
    """The lease whose report finished the run: repeating that final report answers FINISHED."""
    dispatches: int = 0
    """The highest attempt handed out; the durable ``run.attempt`` only moves with reports."""
    queued: bool = False
    """In a ready queue (at most once: a stale entry is skipped when popped)."""
    ready_at: float = 0.0
    """``time.perf_counter()`` when last queued: the dispatch latency metric starts there."""
    signals: dict[str, deque[tuple[int, bytes]]] = dataclasses.field(default_factory=dict)
    """Signals received before the run waited for them, by name, oldest first: the seq of each
    one's ``signal.received`` event (its row's key in ``signals``) and its payload."""
    watchers: set[asyncio.Future[None]] = dataclasses.field(default_factory=set)
    """Who waits for the next durable commit touching the run (subscribers, ``wait_run``): a
    bare future each, made just before the wait and resolved (and forgotten) by :meth:`wake`.
    Lighter than an ``asyncio.Event`` per subscriber, held for the stream's whole life (its
    deque of waiters alone is ~600 bytes): 10,000 held event streams wait here at once."""

    @property
    def id(self) -> str:
        run_id: str = self.run.id
        return run_id

    @property
    def final(self) -> bool:
        return self.run.status in FINAL_STATUSES

    @property
    def durable_seq(self) -> int:
        """Events up to this seq are durable; subscribers see no others."""
        return 0 if self.durable_run is None else self.durable_run.last_event_seq

    @property
    def final_durable(self) -> bool:
        return self.durable_run is not None and self.durable_run.status in FINAL_STATUSES

    @property
    def pending(self) -> list[JournalEntry]:
        """The unresolved waits: while there is one, the run is suspended."""
        return [entry for entry in self.journal if entry.pending]

    def view(self) -> Run:
        """The run as readers see it: its durable version, shown ``running`` with its worker while
        a lease is live, and with what it waits for while suspended. A run whose creation is not
        yet durable shows as accepted (callers wait for the log's barrier first)."""
        # Not `or`: a betterproto2 message's truth compares every field with its default.
        run = self.durable_run if self.durable_run is not None else self.run
        if run.status == RunStatus.SUSPENDED:
            return dataclasses.replace(run, waiting=[wait_of(e) for e in self.pending])
        lease = self.lease or self.ending_lease
        if lease is None or run.status in FINAL_STATUSES:
            return run
        return dataclasses.replace(
            run,
            status=RunStatus.RUNNING,
            worker_id=lease.worker_id,
            attempt=lease.attempt,
            build_id=run.build_id or lease.build_id,
        )

    def published(self, run: Run, journal_length: int) -> None:
        """This version of the run became durable: show it and wake whoever waits on the run."""
        self.durable_run = run
        self.durable_journal = journal_length
        if run is self.run:
            self.ending_lease = None
        self.wake()

    def wake(self) -> None:
        watchers = self.watchers
        if watchers:
            for watcher in watchers:
                if not watcher.done():
                    watcher.set_result(None)
            watchers.clear()

    def until_woken(self) -> asyncio.Future[None]:
        """A future :meth:`wake` resolves: made and awaited with no ``await`` between the
        caller's check of the run and the wait, so that no wake is missed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.watchers.add(waiter)
        return waiter


_DURABLE_FIELDS = (
    "run",
    "journal",
    "events",
    "step_attempts",
    "signals",
    "durable_run",
    "durable_journal",
)
"""What :meth:`RunCache.revert_to_durable` reloads from RocksDB (the rest is not stored)."""


def wait_of(entry: JournalEntry) -> Wait:
    return Wait(
        index=entry.index,
        kind=entry.kind,
        name=entry.name,
        until_ms=entry.until_ms,
        child_run_id=entry.child_run_id,
    )


class RunCache:
    def __init__(
        self, store: Store, finished_capacity: int = 10_000, finished_bytes: int = 256 << 20
    ) -> None:
        """The LRU of finished runs holds at most ``finished_capacity`` runs and about
        ``finished_bytes`` of their payloads (:func:`footprint`): 150 runs of 0.93 MB inputs kept
        +325 MB when it was sized in runs only."""
        self._store = store
        self._capacity = max(0, finished_capacity)
        self._byte_capacity = max(0, finished_bytes)
        self._sizes: dict[str, int] = {}
        self.finished_bytes = 0
        """The payload bytes of the runs in the LRU (their :func:`footprint`)."""
        self.active: dict[str, RunState] = {}
        self.blocked: dict[str, dict[str, RunState]] = {}
        """The blocked runs by function, then id: a build registering resumes those of its
        functions without scanning every active run."""
        self._finished: OrderedDict[str, RunState] = OrderedDict()

    def require(self, run_id: str) -> RunState:
        """:meth:`lookup`, raising RunNotFound for an unknown id."""
        state = self.lookup(run_id) if run_id else None
        if state is None:
            raise retention.missing(self._store, run_id)  # run_expired if retention deleted it
        return state

    def _get(self, run_id: str) -> RunState | None:
        """From memory only, refreshing the LRU."""
        state = self.active.get(run_id)
        if state is None:
            state = self._finished.get(run_id)
            if state is not None:
                self._finished.move_to_end(run_id)
        return state

    def peek(self, run_id: str) -> RunState | None:
        """From memory only, without refreshing the LRU (listings scan many runs)."""
        return self.active.get(run_id) or self._finished.get(run_id)

    def lookup(self, run_id: str) -> RunState | None:
        """From memory, else from RocksDB (then kept in the LRU); None for an unknown id."""
        state = self._get(run_id)
        if state is None:
            state = self._load(run_id)
            if state is not None:
                if state.final:
                    self._remember(state)
                else:  # cannot happen while the cache holds every active run; stay consistent
                    self.active[run_id] = state
        return state

    def forget(self, run_id: str) -> None:
        """Retention deleted the finished run: out of the LRU too."""
        self._drop(run_id)

    def _drop(self, run_id: str) -> None:
        """Out of the LRU, its bytes with it."""
        if self._finished.pop(run_id, None) is not None:
            self.finished_bytes -= self._sizes.pop(run_id, 0)

    def add(self, state: RunState) -> None:
        self.active[state.id] = state

    def reopen(self, state: RunState) -> None:
        """A finished run is retried: active again (out of the LRU)."""
        self._drop(state.id)
        self.active[state.id] = state

    def track(self, state: RunState) -> None:
        """Keep :attr:`blocked` up to date with ``state``'s status (every status change of a run
        goes through ``StateMachine.store_run``, which calls this)."""
        function = state.run.function
        if state.run.status == RunStatus.BLOCKED:
            self.blocked.setdefault(function, {})[state.id] = state
            return
        held = self.blocked.get(function)
        if held is not None and held.pop(state.id, None) is not None and not held:
            del self.blocked[function]

    def retire(self, state: RunState) -> None:
        """``state``'s final state is durable: move it from the active set to the LRU (not
        before, or an eviction would let a lookup reload the run as it was before it finished).
        A run retried before its end was durable is active again: it stays."""
        if not state.final:
            return
        self.active.pop(state.id, None)
        self._remember(state)

    def _remember(self, state: RunState) -> None:
        """Into the LRU, evicting the least recently used past either capacity (a run larger
        than the byte capacity alone is not kept: it is read from RocksDB when asked for)."""
        self._drop(state.id)
        size = footprint(state)
        self._finished[state.id] = state
        self._sizes[state.id] = size
        self.finished_bytes += size
        while self._finished and (
            len(self._finished) > self._capacity or self.finished_bytes > self._byte_capacity
        ):
            run_id, _ = self._finished.popitem(last=False)
            self.finished_bytes -= self._sizes.pop(run_id, 0)

    @property
    def finished_count(self) -> int:
        """Finished runs in the LRU."""
        return len(self._finished)

    # -- RocksDB ---------------------------------------------------------------------------------

    def _load(self, run_id: str) -> RunState | None:
        raw = self._store.get(RUNS, run_id.encode())
        if raw is None:
            return None
        run = decode(Run, raw)
        prefix = run_prefix(run_id)
        store = self._store
        state = RunState(
            run=run,
            journal=[decode(JournalEntry, v) for _, v in store.scan(JOURNAL, prefix=prefix)],
            events=[decode(Event, v) for _, v in store.scan(EVENTS, prefix=prefix)],
            durable_run=run,
            dispatches=run.attempt,
        )
        state.durable_journal = len(state.journal)
        if not state.final:  # a run's end deletes these rows
            for key, value in store.scan(ATTEMPTS, prefix=prefix):
                state.step_attempts[row_number(key)] = decode_u32(value)
            for key, value in store.scan(SIGNALS, prefix=prefix):
                kept = decode(KeptSignal, value)
                state.signals.setdefault(kept.name, deque()).append((row_number(key), kept.payload))
        return state

    def revert_to_durable(self) -> None:
        """A write failed: memory may hold changes of the failed batch that RocksDB never got (a
        wait resolved in place, a kept signal, a journal a retry cut). RocksDB holds exactly what
        is durable: reload every active run from it, into the same ``RunState`` objects (waiters
        and subscribers hold them), so that reads answer durable state only. Once, at the
        failure; the finished runs are read again from RocksDB when asked for."""
        self._finished.clear()
        self._sizes.clear()
        self.finished_bytes = 0
        self.blocked.clear()
        for run_id, state in list(self.active.items()):
            durable = self._load(run_id)
            if durable is None:  # created by the failed batch
                del self.active[run_id]
                continue
            for name in _DURABLE_FIELDS:
                setattr(state, name, getattr(durable, name))
            if state.final:
                self.retire(state)
            else:
                self.track(state)
            state.wake()

    def load_active(self) -> Iterator[RunState]:
        """Every non-final run, in id order, into the active set (at open)."""
        for key, _ in self._store.scan(ACTIVE):
            state = self._load(key.decode())
            if state is None or state.final:
                continue  # an `active` row always has its run; skip rather than trust a bad row
            self.active[state.id] = state
            self.track(state)
            yield state
