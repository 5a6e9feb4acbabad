"""Applying the records of docs/versioning.md: a failed or blocked run retried from its journal
(``RunRetried``), and a run moved to another build (``RunMoved``).

A retry cuts the journal at ``from_index`` (the first entry holding an error, chosen by
:func:`retry_from` when the record is written) and makes the run pending again under its own id.
What the run left behind is put straight:

- the cut entries' rows go; a child the cut part still waits for is cancelled (its position runs
  again and starts a new child), and a timer of the cut part finds no wait when it fires;
- the step attempts are counted afresh;
- the signals it holds are worked out again from its ``signal.received`` events: those the cut
  waits took are kept again, as are those a failed run dropped when it ended;
- a run that had ended (failed) is active again: its ``active`` row is back, its timers are set
  again, and a child it still waits for that ended meanwhile resolves its wait now;
- a run that had a deadline gets a new one, its original timeout from now.

Its parent is not reopened: a parent saw the child's failure when it happened.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from typing import TYPE_CHECKING

from trine_core import MAX_DURATION_MS, StorageError
from trine_engine import metrics
from trine_engine.machine import apply_ending, errors, timeouts
from trine_engine.machine.events import NewEvents
from trine_engine.storage.keys import ACTIVE, ATTEMPTS, JOURNAL, SIGNALS, run_row_key
from trine_proto.codec import encode
from trine_proto.trine.engine.v1 import KeptSignal, RunMoved, RunRetried
from trine_proto.trine.v1 import EntryKind, Event, JournalEntry, RunStatus
from trine_proto.vocabulary import EventType, status_name

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.run_state import RunState
    from trine_engine.storage import AppendBatch

RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.BLOCKED})
"""A run in one of these may be retried (a timed out run, a lost worker's run are failed)."""

_PAYLOAD = b',"payload":'
"""What precedes the payload in a ``signal.received`` event's data (``NewEvents.signal_received``
writes it last, byte for byte)."""


def retry_from(journal: list[JournalEntry]) -> int:
    """Where a retry cuts the journal: at its first entry holding an error (the failed step, a
    failed child, a timed out or cancelled wait), or at its end when none does."""
    return next((e.index for e in journal if e.error is not None), len(journal))


def run_retried(machine: StateMachine, record: RunRetried, batch: AppendBatch) -> None:
    state = machine.cache.lookup(record.run_id)
    if state is None or state.run.status not in RETRYABLE:
        what = "unknown" if state is None else status_name(state.run.status)
        raise StorageError(f"RunRetried record for run {record.run_id}, which is {what}")
    run, at, cut_at = state.run, record.at_ms, record.from_index
    reopened = state.final
    if reopened:
        machine.cache.reopen(state)
        batch.put(ACTIVE, run.id.encode(), b"")
    deadline = _new_deadline(state, at)
    events = NewEvents(state.id, run.last_event_seq, at)
    retries = run.retries + 1
    events.run_retried(run.function, cut_at, record.reason, record.automatic, retries)
    cut = state.journal[cut_at:]
    del state.journal[cut_at:]
    for entry in cut:
        batch.delete(JOURNAL, run_row_key(state.id, entry.index))
    for index in state.step_attempts:
        batch.delete(ATTEMPTS, run_row_key(state.id, index))
    state.step_attempts.clear()
    _keep_signals_again(state, batch)
    state.finished_lease_id = ""
    if reopened:
        _rejoin_waits(machine, state, at, events, batch)
    status = RunStatus.SUSPENDED if state.pending else RunStatus.PENDING
    machine.add_events(state, events, batch)
    retried = dataclasses.replace(
        run,
        status=status,
        error=None,
        result=b"",
        blocked_build_id="",
        retries=retries,
        updated_at_ms=at,
        journal_length=len(state.journal),
        last_event_seq=run.last_event_seq + len(events),
        not_before_ms=0,
        deadline_ms=deadline,
        cancel_requested=False,
        cancel_deadline_ms=0,
    )
    machine.store_run(state, retried, batch)
    machine.publish(state, batch)
    if deadline:
        timeouts.arm_deadline(machine, state, deadline)
    for entry in cut:  # after the cut: a cancelled child finds no wait of its parent to resolve
        child = machine.cache.active.get(entry.child_run_id) if entry.pending else None
        if child is not None:
            apply_ending.cancel(machine, child, "its parent was retried", at, at, batch)
    if status == RunStatus.PENDING:
        batch.after_commit(functools.partial(machine.scheduler.make_dispatchable, state))
    metrics.RUNS_RETRIED.labels(run.function, "true" if record.automatic else "false").inc()


def _new_deadline(state: RunState, at: int) -> int:
    """The run's original timeout from ``at``; 0 for a run without one. The timeout is what the
    last deadline was set to after its base: the run's creation, or its last retry."""
    run = state.run
    if not run.deadline_ms:
        return 0
    base = next(
        (e.at_ms for e in reversed(state.events) if e.type == EventType.RUN_RETRIED),
        run.created_at_ms,
    )
    # A database from before MAX_DURATION_MS may hold a longer timeout: clamped, so the retry's
    # record cannot overflow its 64-bit milliseconds (an apply that fails stops every change).
    deadline: int = at + min(max(1, run.deadline_ms - base), MAX_DURATION_MS)
    return deadline


def _keep_signals_again(state: RunState, batch: AppendBatch) -> None:
    """The signals the run holds after the cut: every one received that no wait left in the
    journal took. Waits take a name's signals oldest first, in journal order, so the first *n*
    received of a name are the ones its *n* resolved waits took."""
    for held in state.signals.values():
        for seq, _payload in held:
            batch.delete(SIGNALS, run_row_key(state.id, seq))
    state.signals.clear()
    taken: dict[str, int] = {}
    for entry in state.journal:
        if entry.kind == EntryKind.SIGNAL and not entry.pending and entry.error is None:
            taken[entry.name] = taken.get(entry.name, 0) + 1
    for event in state.events:
        if event.type != EventType.SIGNAL_RECEIVED:
            continue
        if taken.get(event.name, 0) > 0:
            taken[event.name] -= 1
            continue
        payload = _payload_of(event)
        state.signals.setdefault(event.name, deque()).append((event.seq, payload))
        kept = KeptSignal(name=event.name, payload=payload)
        batch.put(SIGNALS, run_row_key(state.id, event.seq), encode(kept))


def _payload_of(event: Event) -> bytes:
    data: bytes = event.data
    start = data.find(_PAYLOAD)
    if start < 0 or not data.endswith(b"}"):
        raise StorageError(f"signal.received event {event.seq} of run {event.run_id} is malformed")
    return data[start + len(_PAYLOAD) : -1]


def _rejoin_waits(
    machine: StateMachine, state: RunState, at: int, events: NewEvents, batch: AppendBatch
) -> None:
    """A failed run's waits were left as they were when it ended: set their timers again, and
    resolve those for a child that ended meanwhile (its end found the parent final)."""
    for entry in state.pending:
        if entry.until_ms:
            timeouts.arm_wait(machine, state, entry.index, entry.until_ms)
        if entry.kind != EntryKind.CHILD:
            continue
        child = machine.cache.lookup(entry.child_run_id)
        if child is None or not child.final:
            continue
        events.child_finished(
            child.run.function, entry.index, child.id, status_name(child.run.status)
        )
        if child.run.status == RunStatus.COMPLETED:
            machine.resolve(state, entry, at, batch, output=child.run.result or b"null")
        else:
            machine.resolve(state, entry, at, batch, error=errors.of_child(child.run))


def run_moved(machine: StateMachine, record: RunMoved, batch: AppendBatch) -> None:
    """An operator moved the run (event ``run.moved``): it continues only on ``record.build_id``
    if its function is pinned. (``RunMoved.first_take`` is unused: a run's first build comes with
    its first report, see :mod:`.apply_report`.)"""
    state = machine.active(record.run_id)
    run = state.run
    if run.build_id == record.build_id:
        return
    events = NewEvents(state.id, run.last_event_seq, record.at_ms)
    events.run_moved(run.function, run.build_id, record.build_id)
    machine.add_events(state, events, batch)
    moved = dataclasses.replace(
        run,
        build_id=record.build_id,
        updated_at_ms=record.at_ms,
        last_event_seq=run.last_event_seq + len(events),
    )
    machine.store_run(state, moved, batch)
    machine.publish(state, batch)
    if state.queued:
        machine.scheduler.repin(run.function)
