"""The run's timers: a wait's due time (a sleep ends, a signal wait times out) and the run's
deadlines (its timeout, its cancellation's grace). When one fires, the state machine decides from
the run as it is then whether a record is due; a timer whose reason went away does nothing."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from trine_proto.trine.engine.v1 import LogRecord, RunCancelled, RunTimedOut, TimerFired

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.run_state import RunState


def arm(machine: StateMachine, state: RunState) -> None:
    """Every timer of a run loaded at open."""
    for entry in state.pending:
        if entry.until_ms:
            arm_wait(machine, state, entry.index, entry.until_ms)
    for deadline in (state.run.deadline_ms, state.run.cancel_deadline_ms):
        if deadline:
            arm_deadline(machine, state, deadline)


def arm_wait(machine: StateMachine, state: RunState, index: int, at_ms: int) -> None:
    """The wait at ``index`` resolves at ``at_ms`` unless something resolves it first."""
    machine.timers.at(at_ms, functools.partial(_wait_due, machine, state, index))


def arm_deadline(machine: StateMachine, state: RunState, at_ms: int) -> None:
    machine.timers.at(at_ms, functools.partial(_deadline_due, machine, state))


def _moot(machine: StateMachine, state: RunState) -> bool:
    """The engine stopped or the run ended: the timer has nothing left to do."""
    return machine.plog.closed or machine.plog.failure is not None or state.final


def _wait_due(machine: StateMachine, state: RunState, index: int) -> None:
    if _moot(machine, state) or index >= len(state.journal):
        return
    entry = state.journal[index]
    if not entry.pending:
        return
    now = machine.clock.now_ms()
    if entry.until_ms > now:  # the wall clock stepped back
        arm_wait(machine, state, index, entry.until_ms)
        return
    machine.append(LogRecord(timer_fired=TimerFired(run_id=state.id, index=index, at_ms=now)))


def _deadline_due(machine: StateMachine, state: RunState) -> None:
    """Force a cancellation whose grace ran out, or fail a run past its deadline."""
    if _moot(machine, state):
        return
    run, now = state.run, machine.clock.now_ms()
    if run.cancel_requested and run.cancel_deadline_ms <= now:
        reason = "the run did not finish within the cancellation's grace period"
        record = LogRecord(run_cancelled=RunCancelled(run_id=state.id, reason=reason, at_ms=now))
    elif run.deadline_ms and run.deadline_ms <= now:
        record = LogRecord(run_timed_out=RunTimedOut(run_id=state.id, at_ms=now))
    else:
        due = [d for d in (run.deadline_ms, run.cancel_deadline_ms) if d > now]
        if due:  # the wall clock stepped back
            arm_deadline(machine, state, min(due))
        return
    machine.append(record)
