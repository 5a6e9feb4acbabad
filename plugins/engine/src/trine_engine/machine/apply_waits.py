"""Applying what resolves a wait: a signal arriving (or kept until a wait takes it), a timer
firing (a sleep ends, a signal wait times out), a child run ending (in the batch that ends it)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from trine_core import StorageError
from trine_engine.machine import errors
from trine_engine.machine.events import NewEvents, json_or_null
from trine_engine.storage.keys import SIGNALS, run_row_key
from trine_proto.codec import encode
from trine_proto.trine.engine.v1 import KeptSignal, SignalReceived, TimerFired
from trine_proto.trine.v1 import EntryKind, RunStatus
from trine_proto.vocabulary import status_name

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.run_state import RunState
    from trine_engine.storage import AppendBatch


def signal_received(machine: StateMachine, record: SignalReceived, batch: AppendBatch) -> None:
    """The oldest wait for the signal takes it; with none, the run keeps it for a later wait."""
    state = machine.active(record.run_id)
    payload = json_or_null(record.payload)
    waiting = next(
        (
            e
            for e in state.journal
            if e.pending and e.kind == EntryKind.SIGNAL and e.name == record.name
        ),
        None,
    )
    events = NewEvents(state.id, state.run.last_event_seq, record.at_ms)
    events.signal_received(record.name, payload, waiting.index if waiting else None)
    if waiting is None:
        seq = events[0].seq
        state.signals.setdefault(record.name, deque()).append((seq, payload))
        kept = KeptSignal(name=record.name, payload=payload)
        batch.put(SIGNALS, run_row_key(state.id, seq), encode(kept))
    else:
        machine.resolve(state, waiting, record.at_ms, batch, output=payload)
    machine.settle(state, record.at_ms, events, batch)


def timer_fired(machine: StateMachine, record: TimerFired, batch: AppendBatch) -> None:
    state = machine.active(record.run_id)
    entry = state.journal[record.index] if record.index < len(state.journal) else None
    if entry is None or not entry.pending:
        raise StorageError(f"timer of run {state.id} at {record.index}, which does not wait")
    events = NewEvents(state.id, state.run.last_event_seq, record.at_ms)
    if entry.kind == EntryKind.SIGNAL:
        events.signal_timed_out(entry.name, entry.index, entry.until_ms)
        machine.resolve(state, entry, record.at_ms, batch, error=errors.signal_timeout(entry))
    else:
        events.timer_fired(entry.name, entry.index, entry.until_ms)
        machine.resolve(state, entry, record.at_ms, batch)
    machine.settle(state, record.at_ms, events, batch)


def child_finished(machine: StateMachine, child: RunState, batch: AppendBatch) -> None:
    """Resolve the parent's wait for ``child``, in the batch that ends the child."""
    run = child.run
    parent = machine.cache.active.get(run.parent_run_id)
    if parent is None or parent.final or run.parent_index >= len(parent.journal):
        return
    entry = parent.journal[run.parent_index]
    if not entry.pending or entry.child_run_id != run.id:
        return  # already resolved (the parent was cancelled)
    at = run.updated_at_ms
    events = NewEvents(parent.id, parent.run.last_event_seq, at)
    events.child_finished(run.function, entry.index, run.id, status_name(run.status))
    if run.status == RunStatus.COMPLETED:
        machine.resolve(parent, entry, at, batch, output=run.result or b"null")
    else:
        machine.resolve(parent, entry, at, batch, error=errors.of_child(run))
    machine.settle(parent, at, events, batch)
