"""Applying a worker's report: its planned journal entries, events, step attempts, kept signals
taken, children started, and the run's next state.

A run's build is the build of the first worker that reports for it: a ``RunCommands`` record
naming a build gives it to a run that has none yet, live and read back from the log alike (the
record carries it, so applying stays deterministic). Taking a run writes nothing, so a run taken
and given back (or whose worker died) before any report still has none."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from trine_engine import metrics
from trine_engine.machine import apply_start, timeouts
from trine_engine.storage.keys import ATTEMPTS, JOURNAL, SIGNALS, encode_u32, run_row_key
from trine_proto.codec import encode
from trine_proto.trine.engine.v1 import RunCommands
from trine_proto.trine.v1 import ReportOutcome, RunStatus

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.machine.plan import Plan
    from trine_engine.run_state import RunState
    from trine_engine.storage import AppendBatch


def run_commands(machine: StateMachine, record: RunCommands, batch: AppendBatch) -> None:
    """A report read from the log: planned again (the live path plans before appending, see
    :meth:`StateMachine.append_report`)."""
    state = machine.active(record.run_id)
    # A record from before RunCommands.build_id names no build: the run's own then.
    plan = machine.plan(state, record, record.build_id or state.run.build_id)
    apply_plan(machine, state, record, plan, batch)


def apply_plan(
    machine: StateMachine, state: RunState, record: RunCommands, plan: Plan, batch: AppendBatch
) -> None:
    run = state.run
    for entry in plan.entries:
        state.journal.append(entry)
        batch.put(JOURNAL, run_row_key(run.id, entry.index), encode(entry))
        if entry.pending and entry.until_ms:
            timeouts.arm_wait(machine, state, entry.index, entry.until_ms)
    for name, taken in plan.consumed.items():
        kept = state.signals[name]
        for _ in range(taken):
            seq, _payload = kept.popleft()
            batch.delete(SIGNALS, run_row_key(run.id, seq))
        if not kept:
            del state.signals[name]
    machine.add_events(state, plan.events, batch)
    for index, attempts in plan.step_attempts.items():
        state.step_attempts[index] = attempts
        batch.put(ATTEMPTS, run_row_key(run.id, index), encode_u32(attempts))
    for child in plan.children:
        apply_start.create(machine, child, batch)
    status, not_before_ms = run.status, run.not_before_ms
    result, error, blocked_build = run.result, run.error, run.blocked_build_id
    if plan.outcome == ReportOutcome.RETRY_SCHEDULED:
        status, not_before_ms = RunStatus.PENDING, plan.retry_at_ms
    elif plan.outcome == ReportOutcome.SUSPENDED:
        status = RunStatus.SUSPENDED
    elif plan.final_status is not None:
        status, result, error = plan.final_status, plan.result, plan.error
        if status == RunStatus.BLOCKED:
            blocked_build = plan.build_id
    changed = dataclasses.replace(
        run,
        build_id=run.build_id or record.build_id,
        status=status,
        attempt=max(run.attempt, record.attempt),
        updated_at_ms=record.at_ms,
        journal_length=len(state.journal),
        last_event_seq=run.last_event_seq + len(plan.events),
        not_before_ms=not_before_ms,
        result=result,
        error=error,
        blocked_build_id=blocked_build,
    )
    machine.store_run(state, changed, batch)
    machine.publish(state, batch)
    if plan.step_ends:
        _count_steps(run.function, plan.step_ends)


def _count_steps(function: str, ends: list[tuple[str, int]]) -> None:
    for outcome, took_ms in ends:
        metrics.STEP_ATTEMPTS.labels(function).inc()
        if outcome == "retried":
            metrics.STEP_RETRIES.labels(function).inc()
        elif outcome == "failed":
            metrics.STEP_FAILURES.labels(function).inc()
        if took_ms >= 0:
            metrics.STEP_DURATION.labels(function).observe(took_ms / 1000)
