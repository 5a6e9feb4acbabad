"""Applying the records that end a run from outside its worker: a cancellation asked for (the run
may clean up), a cancellation forced when its grace ran out, a run past its deadline. A run's
unfinished children are cancelled with it, in the same batch."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from trine_engine.machine import errors, timeouts
from trine_engine.machine.events import NewEvents
from trine_proto.trine.engine.v1 import (
    CancelRequested,
    RunCancelled,
    RunRetryScheduled,
    RunTimedOut,
)
from trine_proto.trine.v1 import EntryKind, ErrorInfo, RunStatus

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.run_state import RunState
    from trine_engine.storage import AppendBatch


def cancel_requested(machine: StateMachine, record: CancelRequested, batch: AppendBatch) -> None:
    state = machine.active(record.run_id)
    cancel(machine, state, record.reason, record.at_ms, record.deadline_ms, batch)


def run_cancelled(machine: StateMachine, record: RunCancelled, batch: AppendBatch) -> None:
    state = machine.active(record.run_id)
    error = errors.cancelled(state.id, record.reason)
    terminate(machine, state, RunStatus.CANCELLED, error, record.at_ms, batch)


def run_timed_out(machine: StateMachine, record: RunTimedOut, batch: AppendBatch) -> None:
    state = machine.active(record.run_id)
    error = errors.run_timeout(state.id)
    terminate(machine, state, RunStatus.FAILED, error, record.at_ms, batch)


def run_retry_scheduled(
    machine: StateMachine, record: RunRetryScheduled, batch: AppendBatch
) -> None:
    """Not written by this engine (a retry is part of its report's record); applied for the
    completeness of the format."""
    state = machine.active(record.run_id)
    run = dataclasses.replace(state.run, status=RunStatus.PENDING, not_before_ms=record.retry_at_ms)
    machine.store_run(state, run, batch)
    machine.publish(state, batch)


def cancel(
    machine: StateMachine, state: RunState, reason: str, at: int, deadline: int, batch: AppendBatch
) -> None:
    """Ask the run to stop: its waits resolve with a cancellation the workflow can handle, its
    children are asked too, and it is forced to ``cancelled`` at ``deadline``. A run with nothing
    to clean up (it never took a step) is cancelled at once."""
    if state.final:
        return
    if state.run.status == RunStatus.BLOCKED or (not state.journal and state.lease is None):
        # Nothing to clean up: a run that never took a step, or one held blocked (its code
        # raised; no worker runs it until it is retried).
        error = errors.cancelled(state.id, reason)
        terminate(machine, state, RunStatus.CANCELLED, error, at, batch)
        return
    if state.run.cancel_requested:
        return
    events = NewEvents(state.id, state.run.last_event_seq, at)
    events.cancel_requested(state.run.function, reason, deadline)
    state.run = dataclasses.replace(state.run, cancel_requested=True, cancel_deadline_ms=deadline)
    for entry in state.pending:
        machine.resolve(state, entry, at, batch, error=errors.cancelled(state.id, reason))
        if entry.kind == EntryKind.CHILD:
            _cancel_child(machine, entry.child_run_id, reason, at, deadline, batch)
    timeouts.arm_deadline(machine, state, deadline)
    machine.settle(state, at, events, batch)


def terminate(
    machine: StateMachine,
    state: RunState,
    status: RunStatus,
    error: ErrorInfo,
    at: int,
    batch: AppendBatch,
) -> None:
    """End the run now, whatever it was doing (an immediate or forced cancellation, a timeout):
    its waits resolve with ``error``, its lease is fenced, its unfinished children cancelled."""
    run = state.run
    events = NewEvents(state.id, run.last_event_seq, at)
    if status == RunStatus.CANCELLED:
        events.run_cancelled(run.function, error)
    else:
        events.run_failed(run.function, error)
    machine.add_events(state, events, batch)
    waits = state.pending
    for entry in waits:
        machine.resolve(state, entry, at, batch, error=error)
    machine.leases.fence(state)
    ended = dataclasses.replace(
        run,
        status=status,
        error=error,
        updated_at_ms=at,
        last_event_seq=run.last_event_seq + len(events),
    )
    machine.store_run(state, ended, batch)
    machine.publish(state, batch)
    for entry in waits:
        if entry.kind == EntryKind.CHILD:
            _cancel_child(machine, entry.child_run_id, "its parent ended", at, at, batch)


def _cancel_child(
    machine: StateMachine, run_id: str, reason: str, at: int, deadline: int, batch: AppendBatch
) -> None:
    child = machine.cache.active.get(run_id)
    if child is not None:
        cancel(machine, child, reason or "its parent was cancelled", at, deadline, batch)
