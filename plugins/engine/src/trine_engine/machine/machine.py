"""The run state machine: the only code that changes durable state.

Every change is a log record. :meth:`StateMachine.append` gives it the next offset in the batch
being gathered and applies it at once, with no ``await`` in between: the in-memory runs change
(so the next command sees them) and every derived-state write (``runs``, ``active``, ``journal``,
``events``, ``attempts``, ``signals``, ``idem``, ``functions``) joins the batch that carries the
record, so the log and the state commit together. Applying depends on the record and the current
state only: every timestamp comes from the record, and retry times follow from the record's time
and the policy (no jitter). What must wait for durability (publishing to readers and subscribers,
queueing a run for dispatch) is registered on the batch and runs once it is written.

Each command kind has its planner (:data:`PLANNERS`) and each record kind its applier
(:data:`APPLIERS`), looked up by the name of the oneof field that carries it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import betterproto2
import structlog

from trine_core import InvalidArgument, PayloadTooLarge, StorageError, tracing
from trine_engine import metrics
from trine_engine.builds import BuildBook
from trine_engine.clock import Clock
from trine_engine.leases import LeaseTable
from trine_engine.machine import (
    apply_ending,
    apply_report,
    apply_retry,
    apply_start,
    apply_waits,
    plan_ending,
    plan_steps,
    plan_waits,
    timeouts,
)
from trine_engine.machine.events import NewEvents
from trine_engine.machine.plan import Plan
from trine_engine.run_state import RunCache, RunState
from trine_engine.scheduler import Scheduler
from trine_engine.storage import AppendBatch, PartitionLog, Store
from trine_engine.storage.keys import (
    ACTIVE,
    ATTEMPTS,
    EVENTS,
    FUNCTIONS,
    JOURNAL,
    META,
    RUNS,
    SIGNALS,
    ended_key,
    run_row_key,
)
from trine_engine.timers import Timers
from trine_proto.codec import decode, encode
from trine_proto.trine.engine.v1 import LogRecord, RunCommands
from trine_proto.trine.v1 import (
    EntryKind,
    ErrorInfo,
    FunctionSpec,
    JournalEntry,
    ReportOutcome,
    Run,
    RunStatus,
)
from trine_proto.vocabulary import json_problem, status_name

CommandPlanner = Callable[[Plan, Any], None]
"""Plans one command; its second argument is the message the command's oneof field holds."""
RecordApplier = Callable[["StateMachine", Any, AppendBatch], None]
"""Applies one record; its second argument is the message the record's oneof field holds."""

PLANNERS: Final[Mapping[str, CommandPlanner]] = {
    "step_started": plan_steps.step_started,
    "step_completed": plan_steps.step_completed,
    "step_failed": plan_steps.step_failed,
    "emit": plan_steps.emit,
    "patched": plan_steps.patched,
    "sleep": plan_waits.sleep,
    "wait_signal": plan_waits.wait_signal,
    "start_child": plan_waits.start_child,
    "cancel_observed": plan_waits.cancel_observed,
    "run_completed": plan_ending.run_completed,
    "run_failed": plan_ending.run_failed,
    "run_blocked": plan_ending.run_blocked,
}
APPLIERS: Final[Mapping[str, RecordApplier]] = {
    "functions_registered": apply_start.functions_registered,
    "run_started": apply_start.run_started,
    "run_commands": apply_report.run_commands,
    "run_retry_scheduled": apply_ending.run_retry_scheduled,
    "run_cancelled": apply_ending.run_cancelled,
    "cancel_requested": apply_ending.cancel_requested,
    "signal_received": apply_waits.signal_received,
    "timer_fired": apply_waits.timer_fired,
    "run_timed_out": apply_ending.run_timed_out,
    "run_retried": apply_retry.run_retried,
    "run_moved": apply_retry.run_moved,
}


class StateMachine:
    def __init__(
        self,
        plog: PartitionLog,
        cache: RunCache,
        scheduler: Scheduler,
        leases: LeaseTable,
        timers: Timers,
        clock: Clock,
        max_payload_bytes: int,
        log: structlog.stdlib.BoundLogger,
        functions: dict[str, FunctionSpec] | None = None,
        builds: BuildBook | None = None,
    ) -> None:
        self.plog = plog
        self.cache = cache
        self.scheduler = scheduler
        self.leases = leases
        self.timers = timers
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.log = log
        self.functions: dict[str, FunctionSpec] = {} if functions is None else functions
        """Every function a worker registered, by name (shared with the scheduler, which pins
        runs by their function's versioning)."""
        self.builds = builds or BuildBook()
        """Which builds registered which functions, and which ask for work now."""

    def load_functions(self, store: Store) -> None:
        """The registered functions (the runs load through the cache)."""
        for key, value in store.scan(FUNCTIONS):
            self.functions[key.decode()] = decode(FunctionSpec, value)

    def check_size(self, payload: bytes, what: str) -> None:
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(payload)} bytes; the limit is {self.max_payload_bytes}",
                size=len(payload),
                limit=self.max_payload_bytes,
            )

    def json_payload(self, payload: bytes, what: str) -> bytes:
        """``payload`` (empty: JSON ``null``), refused unless it is one JSON value in UTF-8 within
        the size limit (``trine_proto.vocabulary.json_problem``). Every payload is stored as the
        bytes it came as, and the gateway writes them into its answers and event streams
        unparsed: one that is not JSON (a worker's ``b"not json{"``, ``NaN``, UTF-16) would make
        every answer that carries it invalid. The worker SDK and the gateway send only JSON; this
        holds for any other sender too."""
        self.check_size(payload, what)
        if not payload:
            return b"null"
        problem = json_problem(payload)
        if problem is not None:
            raise InvalidArgument(f"{what} is not JSON: {problem}")
        return payload

    def active(self, run_id: str) -> RunState:
        """The non-final run a record names; a record naming any other is corrupt."""
        state = self.cache.lookup(run_id)
        if state is None or state.final:
            raise StorageError(f"log record for run {run_id}, which is not active")
        return state

    # -- changing state ----------------------------------------------------------------------------

    def plan(self, state: RunState, body: RunCommands, build_id: str = "") -> Plan:
        """Check a report's commands, sent by a worker of ``build_id``, against ``state`` and work
        out their effect. Raises InvalidArgument or PayloadTooLarge, having changed nothing."""
        plan = Plan(self, state, body.at_ms, build_id)
        for command in body.commands:
            kind, value = betterproto2.which_one_of(command, "command")
            planner = PLANNERS.get(kind)
            if planner is None:
                raise InvalidArgument("a report command carries nothing")
            planner(plan, value)
            if plan.attempt_ended:
                break
        if plan.final_status is None and any(e.pending for e in plan.entries):
            plan.outcome = ReportOutcome.SUSPENDED  # it goes on once its waits resolve
        return plan

    def append(self, record: LogRecord) -> AppendBatch:
        """Append ``record`` and apply it into the same batch."""
        offset = self.plog.next_offset
        batch = self.plog.append(record)
        try:
            self.apply(record, batch)
        except BaseException as exc:
            self._poison(offset, exc)
            raise
        return batch

    def append_report(self, state: RunState, body: RunCommands, plan: Plan) -> AppendBatch:
        """Append a report's record and apply its plan, already worked out (to refuse a bad
        report before anything was appended)."""
        offset = self.plog.next_offset
        batch = self.plog.append(LogRecord(run_commands=body))
        try:
            apply_report.apply_plan(self, state, body, plan, batch)
        except BaseException as exc:
            self._poison(offset, exc)
            raise
        return batch

    def apply(self, record: LogRecord, batch: AppendBatch) -> None:
        kind, body = betterproto2.which_one_of(record, "record")
        applier = APPLIERS.get(kind)
        if applier is None:
            raise StorageError(f"log record of unknown kind {kind!r}")
        applier(self, body, batch)

    def _poison(self, offset: int, exc: BaseException) -> None:
        # Checks ran before the append, so this is a bug: never commit half-applied state.
        self.plog.poison(offset, exc)

    # -- shared by the appliers ----------------------------------------------------------------

    def add_events(self, state: RunState, events: NewEvents, batch: AppendBatch) -> None:
        for event in events:
            state.events.append(event)
            batch.put(EVENTS, run_row_key(event.run_id, event.seq), encode(event))

    def store_run(self, state: RunState, run: Run, batch: AppendBatch) -> None:
        was_blocked = state.run.status == RunStatus.BLOCKED
        state.run = run
        key = run.id.encode()
        batch.put(RUNS, key, encode(run))
        self.cache.track(state)
        if run.status == RunStatus.BLOCKED and not was_blocked:
            batch.after_commit(functools.partial(self._log_blocked, run))
        if state.final:
            batch.delete(ACTIVE, key)
            batch.put(META, ended_key(run.updated_at_ms, run.id), b"")  # retention's index
            self._drop_active_rows(state, batch)
            # Only once durable: evicted earlier, a lookup would reload the stale running run.
            batch.after_commit(functools.partial(self.cache.retire, state))
            if run.status == RunStatus.FAILED:
                # Once, when the failure is durable (a retry is not the run's failure).
                batch.after_commit(functools.partial(self._log_failed, run))
            if run.parent_run_id:
                apply_waits.child_finished(self, state, batch)
            if run.trace_context and tracing.enabled():
                batch.after_commit(functools.partial(_trace_run, run))
            metrics.RUNS_FINISHED.labels(run.function, status_name(run.status)).inc()
            metrics.RUN_DURATION.labels(run.function).observe(
                max(0, run.updated_at_ms - run.created_at_ms) / 1000
            )

    def _log_failed(self, run: Run) -> None:
        error = run.error or ErrorInfo()
        self.log.warning(
            "run failed",
            run_id=run.id,
            function=run.function,
            error_type=error.type,
            error_message=error.message,
        )

    def _log_blocked(self, run: Run) -> None:
        error = run.error or ErrorInfo()
        self.log.warning(
            "run blocked by a workflow error; it resumes when retried on fixed code",
            run_id=run.id,
            function=run.function,
            build_id=run.blocked_build_id,
            error_type=error.type,
            error_message=error.message,
        )

    @staticmethod
    def _drop_active_rows(state: RunState, batch: AppendBatch) -> None:
        """An ended run is never dispatched again: its step attempts and kept signals go."""
        for index in state.step_attempts:
            batch.delete(ATTEMPTS, run_row_key(state.id, index))
        for kept in state.signals.values():
            for seq, _payload in kept:
                batch.delete(SIGNALS, run_row_key(state.id, seq))
        state.step_attempts.clear()
        state.signals.clear()

    @staticmethod
    def publish(state: RunState, batch: AppendBatch) -> None:
        """Once durable, show this version of the run to readers and subscribers."""
        run, journal_length = state.run, len(state.journal)
        batch.after_commit(lambda: state.published(run, journal_length))

    def resolve(
        self,
        state: RunState,
        entry: JournalEntry,
        at: int,
        batch: AppendBatch,
        *,
        output: bytes = b"",
        error: ErrorInfo | None = None,
    ) -> None:
        """Resolve a pending wait in place."""
        resolved = dataclasses.replace(
            entry, pending=False, output=output, error=error, ended_at_ms=at
        )
        if state.run.trace_context and tracing.enabled():
            batch.after_commit(functools.partial(_trace_wait, state.run, resolved))
        state.journal[entry.index] = resolved
        batch.put(JOURNAL, run_row_key(state.id, entry.index), encode(resolved))

    def settle(self, state: RunState, at: int, events: NewEvents, batch: AppendBatch) -> None:
        """Store the run after waits resolved: pending again (and dispatchable once durable) if
        it was suspended and none is left."""
        run = state.run
        self.add_events(state, events, batch)
        resumed = run.status == RunStatus.SUSPENDED and not state.pending
        self.store_run(
            state,
            dataclasses.replace(
                run,
                status=RunStatus.PENDING if resumed else run.status,
                updated_at_ms=at,
                last_event_seq=run.last_event_seq + len(events),
            ),
            batch,
        )
        self.publish(state, batch)
        if resumed:
            batch.after_commit(functools.partial(self.scheduler.make_dispatchable, state))

    def arm(self, state: RunState) -> None:
        """Set the timers of a run loaded at open: its waits' due times and its deadlines."""
        timeouts.arm(self, state)


def _trace_run(run: Run) -> None:
    """The run's end, durable: a span of its whole life in its trace (``trine.run``)."""
    error = run.error
    tracing.record(
        f"trine.run {run.function}",
        run.trace_context,
        run.created_at_ms,
        run.updated_at_ms,
        attributes={
            "trine.run_id": run.id,
            "trine.function": run.function,
            "trine.status": status_name(run.status),
            "trine.attempts": run.attempt,
        },
        error=None if error is None else f"{error.type}: {error.message}",
    )


def _trace_wait(run: Run, entry: JournalEntry) -> None:
    """A wait resolved (durably): a span from when it began to now (``trine.sleep``…)."""
    kind = EntryKind(entry.kind).name.lower()
    error = entry.error
    tracing.record(
        f"trine.{kind} {entry.name}",
        run.trace_context,
        entry.started_at_ms,
        entry.ended_at_ms,
        attributes={
            "trine.run_id": run.id,
            "trine.function": run.function,
            "trine.wait.index": entry.index,
            "trine.wait.name": entry.name,
        },
        error=None if error is None else f"{error.type}: {error.message}",
    )
