"""Planning the commands of code a worker ran: steps starting, completing and failing (a retry, or
a final failure the workflow sees), and the workflow's own events (journaled, published once)."""

from __future__ import annotations

import dataclasses

from trine_core import InvalidArgument
from trine_engine.machine.plan import Plan
from trine_proto import retry
from trine_proto.trine.v1 import (
    Emit,
    EntryKind,
    ErrorInfo,
    JournalEntry,
    Patched,
    ReportOutcome,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from trine_proto.vocabulary import signal_name_problem


def step_started(plan: Plan, command: StepStarted) -> None:
    plan.events.step_started(command.name, command.index, command.attempt)


def step_completed(plan: Plan, command: StepCompleted) -> None:
    entry = command.entry
    if entry is None:
        raise InvalidArgument("StepCompleted carries no journal entry")
    plan.machine.check_size(entry.output, f"the output of step {entry.index}")
    if not plan.follows(entry.index, entry.name):
        return  # a repeat of the last entry: a no-op, whatever it carries
    output = plan.machine.json_payload(entry.output, f"the output of step {entry.index}")
    entry = dataclasses.replace(  # a step: whatever wait fields a worker sent
        entry,
        output=output,
        ended_at_ms=entry.ended_at_ms or plan.at,
        kind=EntryKind.STEP,
        pending=False,
        until_ms=0,
        child_run_id="",
    )
    plan.add_entry(entry)
    plan.events.step_completed(entry.name, entry.index, entry.attempt, output)
    plan.step_ends.append(("completed", _took(entry.started_at_ms, entry.ended_at_ms)))


def step_failed(plan: Plan, command: StepFailed) -> None:
    """A retryable failure with attempts left ends this attempt of the run and schedules the next;
    any other is final: journaled, for the workflow to see (and maybe catch)."""
    if not plan.follows(command.index, command.name):
        return
    index, attempt = command.index, command.attempt
    seen = plan.step_attempts.get(index, plan.state.step_attempts.get(index, 0))
    plan.step_attempts[index] = max(seen, attempt)
    spec = plan.machine.functions.get(plan.run.function)
    policy = retry.effective(command.retry, spec.retry if spec else None)
    retryable = command.error is not None and command.error.retryable
    if retryable and attempt < policy.max_attempts:
        plan.retry_at_ms = plan.at + policy.delay_ms(attempt)
        plan.outcome = ReportOutcome.RETRY_SCHEDULED
        plan.attempt_ended = True
        plan.events.step_failed(command.name, index, attempt, command.error, plan.retry_at_ms)
        plan.step_ends.append(("retried", _took(command.started_at_ms, plan.at)))
        return
    plan.add_entry(
        JournalEntry(
            index=index,
            name=command.name,
            input_digest=command.input_digest,
            error=command.error or ErrorInfo(),
            attempt=attempt,
            started_at_ms=command.started_at_ms,
            ended_at_ms=plan.at,
        )
    )
    plan.outcome = ReportOutcome.STEP_FAILED
    plan.events.step_failed(command.name, index, attempt, command.error, None)
    plan.step_ends.append(("failed", _took(command.started_at_ms, plan.at)))


def _took(started_ms: int, ended_ms: int) -> int:
    return ended_ms - started_ms if started_ms and ended_ms >= started_ms else -1


def emit(plan: Plan, command: Emit) -> None:
    """A custom event, journaled at its index (its data as the entry's output) and published in
    the same commit, so a workflow that re-walks it (a retry, a replay) never publishes it again.
    An Emit for an index that already journals this event (the worker sent it again) is a no-op:
    acknowledged, nothing published. One without an index comes from an SDK that predates
    journaled emits (or from an old log record): published only, as it was then."""
    name = command.name
    what = f"event {name!r}"
    plan.machine.check_size(command.data, what)
    index = command.index
    if index is None:
        plan.events.custom(name, plan.machine.json_payload(command.data, what))
        return
    if not name:
        raise InvalidArgument("an event needs a name")
    if index < plan.length:
        journaled = plan.entry(index)
        if journaled.kind == EntryKind.EMIT and journaled.name == name:
            return
    elif index == plan.length:
        data = plan.machine.json_payload(command.data, what)
        plan.add_entry(
            JournalEntry(
                index=index,
                name=name,
                kind=EntryKind.EMIT,
                output=data,
                started_at_ms=plan.at,
                ended_at_ms=plan.at,
            )
        )
        plan.events.custom(name, data)
        return
    raise InvalidArgument(
        f"event {index} ({name!r}) of run {plan.run.id} does not follow its journal, which "
        f"has {plan.length} entries",
        run_id=plan.run.id,
        index=index,
        journal_length=plan.length,
    )


def patched(plan: Plan, command: Patched) -> None:
    """The workflow took the new path of a change (``ctx.patched``): a resolved ``patch`` entry
    named after the change id, so its replays take that path too. Nothing is published. A
    repeat of the last entry (the worker sent it again) is a no-op, as for every entry."""
    change_id = command.change_id
    problem = signal_name_problem(change_id)
    if problem is not None:
        raise InvalidArgument(f"patch {change_id!r}: {problem.replace('signal name', 'change id')}")
    if not plan.follows(command.index, change_id):
        return
    plan.add_entry(
        JournalEntry(
            index=command.index,
            name=change_id,
            kind=EntryKind.PATCH,
            started_at_ms=plan.at,
            ended_at_ms=plan.at,
        )
    )
