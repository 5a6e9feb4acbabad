"""Planning the waits a workflow journals: sleeps, signal waits, child runs, and the position where
it learned of its cancellation.

A wait is journaled ``pending`` (the run suspends once the report is applied) unless it resolves
at once: its due time has passed, a kept signal answers it, the child cannot start, or the run is
being cancelled (a run being cancelled waits for nothing).
"""

from __future__ import annotations

import dataclasses

from trine_core import InvalidArgument, check_duration
from trine_engine.machine import errors
from trine_engine.machine.plan import Plan
from trine_proto.trine.v1 import (
    CancelObserved,
    EntryKind,
    JournalEntry,
    Run,
    RunStatus,
    Sleep,
    StartChild,
    WaitSignal,
)
from trine_proto.vocabulary import signal_name_problem

SLEEP_NAME = "sleep"


def sleep(plan: Plan, command: Sleep) -> None:
    if not plan.follows(command.index, SLEEP_NAME):
        return
    at = plan.at
    what = f"the sleep at step {command.index}"
    if command.until_ms:
        until = command.until_ms
        check_duration(until - at, what)
    else:
        until = at + check_duration(command.duration_ms, what)
    entry = JournalEntry(
        index=command.index, name=SLEEP_NAME, kind=EntryKind.SLEEP, started_at_ms=at, until_ms=until
    )
    if plan.run.cancel_requested:
        error = errors.cancelled(plan.run.id, "")
        plan.add_resolved(dataclasses.replace(entry, error=error, ended_at_ms=at))
    elif until <= at:
        plan.add_resolved(dataclasses.replace(entry, ended_at_ms=at))
    else:
        plan.add_entry(dataclasses.replace(entry, pending=True))
        plan.events.timer_started(SLEEP_NAME, command.index, until)


def wait_signal(plan: Plan, command: WaitSignal) -> None:
    """Kept signals of that name answer waits oldest first, within one report too."""
    name = command.name
    if not name:
        raise InvalidArgument("a signal wait needs the signal's name")
    if not plan.follows(command.index, name):
        return
    problem = signal_name_problem(name)
    if problem is not None:  # no client could ever send it
        raise InvalidArgument(f"the signal wait at step {command.index}: {problem}")
    check_duration(command.timeout_ms, f"the timeout of the signal wait at step {command.index}")
    at = plan.at
    entry = JournalEntry(
        index=command.index,
        name=name,
        kind=EntryKind.SIGNAL,
        started_at_ms=at,
        until_ms=at + command.timeout_ms if command.timeout_ms else 0,
    )
    kept = plan.state.signals.get(name, ())
    taken = plan.consumed.get(name, 0)
    if plan.run.cancel_requested:
        error = errors.cancelled(plan.run.id, "")
        plan.add_resolved(dataclasses.replace(entry, error=error, ended_at_ms=at))
    elif taken < len(kept):
        plan.consumed[name] = taken + 1
        _seq, payload = kept[taken]
        plan.add_resolved(dataclasses.replace(entry, output=payload, ended_at_ms=at))
    else:
        plan.add_entry(dataclasses.replace(entry, pending=True))
        plan.events.signal_waiting(name, command.index, entry.until_ms)


def start_child(plan: Plan, command: StartChild) -> None:
    """The child is created in the same batch as the report (its id was assigned before the
    record was written); the parent's wait resolves when the child ends."""
    if not command.run_id:
        raise InvalidArgument("StartChild carries no run id (the engine assigns it)")
    if not plan.follows(command.index, command.function):
        return
    child_input = plan.machine.json_payload(
        command.input, f"the input of child run {command.index}"
    )
    check_duration(command.timeout_ms, f"the timeout of child run {command.index}")
    at = plan.at
    spec = plan.machine.functions.get(command.function)
    if plan.run.cancel_requested or spec is None:
        error = (
            errors.cancelled(plan.run.id, "")
            if plan.run.cancel_requested
            else errors.unknown_function(command.function)
        )
        plan.add_resolved(
            JournalEntry(
                index=command.index,
                name=command.function,
                kind=EntryKind.CHILD,
                error=error,
                started_at_ms=at,
                ended_at_ms=at,
            )
        )
        return
    timeout = command.timeout_ms or check_duration(
        spec.timeout_ms, f"the timeout of function {spec.name!r}"
    )
    plan.children.append(
        Run(
            id=command.run_id,
            function=command.function,
            status=RunStatus.PENDING,
            input=child_input,
            created_at_ms=at,
            updated_at_ms=at,
            parent_run_id=plan.run.id,
            parent_index=command.index,
            deadline_ms=at + timeout if timeout else 0,
            trace_context=command.trace_context or plan.run.trace_context,
        )
    )
    plan.add_entry(
        JournalEntry(
            index=command.index,
            name=command.function,
            kind=EntryKind.CHILD,
            pending=True,
            started_at_ms=at,
            child_run_id=command.run_id,
        )
    )
    plan.events.child_started(command.function, command.index, command.run_id)


def cancel_observed(plan: Plan, command: CancelObserved) -> None:
    if not plan.follows(command.index, command.name):
        return
    plan.add_resolved(
        JournalEntry(
            index=command.index,
            name=command.name,
            kind=EntryKind.CANCEL,
            error=errors.cancelled(plan.run.id, ""),
            started_at_ms=plan.at,
            ended_at_ms=plan.at,
        )
    )
