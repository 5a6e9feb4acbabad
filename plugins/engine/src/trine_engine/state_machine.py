"""Applying log records to the runs: the only code that changes durable state.

``apply(record, writes)`` updates the in-memory runs and adds every derived-state write (``runs``,
``active``, ``journal``, ``events``, ``idem``, ``functions``) to the batch that carries the record,
so the log and the state commit together. It depends on the record and the current state only:
every timestamp comes from the record, and retry times follow from the record's time and the
policy (no jitter). In-memory changes are made when the record is accepted, so the next command
sees them; events are published to subscribers only once the batch is durable.

A worker's commands are first *planned* (``plan_commands``): checked and turned into journal
entries and events without changing anything, so a refused report changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Protocol

import betterproto2

from trine_core import InvalidArgument, PayloadTooLarge, StorageError
from trine_engine import event_data, retry
from trine_engine.keys import event_key, journal_key
from trine_engine.run_state import RunCache, RunState
from trine_engine.storage import ACTIVE, EVENTS, FUNCTIONS, IDEM, JOURNAL, RUNS, Store
from trine_proto.trine.v1 import (
    ErrorInfo,
    Event,
    FunctionSpec,
    FunctionsRegistered,
    JournalEntry,
    LogRecord,
    ReportOutcome,
    Run,
    RunCancelled,
    RunCommands,
    RunRetryScheduled,
    RunStarted,
    RunStatus,
)

CANCELLED_ERROR_TYPE = "Cancelled"


class Writes(Protocol):
    """Where derived-state writes go: the batch that carries the record (an ``AppendBatch``)."""

    def put(self, family: str, key: bytes, value: bytes) -> None: ...

    def delete(self, family: str, key: bytes) -> None: ...

    def after_commit(self, callback: Callable[[], None]) -> None: ...


@dataclasses.dataclass(slots=True)
class CommandsPlan:
    """What a report will do to its run, computed without changing it."""

    entries: list[JournalEntry] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    step_attempts: dict[int, int] = dataclasses.field(default_factory=dict)
    outcome: ReportOutcome = ReportOutcome.CONTINUE
    retry_at_ms: int = 0
    final_status: RunStatus | None = None
    result: bytes = b""
    error: ErrorInfo | None = None


@dataclasses.dataclass(slots=True)
class Applied:
    state: RunState | None = None
    plan: CommandsPlan | None = None


class StateMachine:
    def __init__(self, cache: RunCache, max_payload_bytes: int) -> None:
        self.cache = cache
        self.functions: dict[str, FunctionSpec] = {}
        self.max_payload_bytes = max_payload_bytes

    def load(self, store: Store) -> None:
        """The registered functions (the runs load lazily through the cache)."""
        for key, value in store.scan(FUNCTIONS):
            self.functions[key.decode()] = FunctionSpec.parse(value)

    # -- checks ----------------------------------------------------------------------------------

    def check_size(self, payload: bytes, what: str) -> None:
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(payload)} bytes; the limit is {self.max_payload_bytes}",
                size=len(payload),
                limit=self.max_payload_bytes,
            )

    def plan_commands(self, state: RunState, body: RunCommands) -> CommandsPlan:
        """Check a report's commands against ``state`` and work out their effect. Raises
        InvalidArgument or PayloadTooLarge, having changed nothing."""
        plan = CommandsPlan()
        run = state.run
        at = body.at_ms
        length = len(state.journal)
        last_name = state.journal[-1].name if state.journal else None
        seq = run.last_event_seq
        spec = self.functions.get(run.function)

        def event(kind: str, name: str, data: bytes) -> None:
            nonlocal seq
            seq += 1
            plan.events.append(
                Event(run_id=run.id, seq=seq, type=kind, name=name, data=data, at_ms=at)
            )

        def follows(index: int, name: str) -> bool:
            """True for the next journal position, False for a repeat of the last entry."""
            if index == length:
                return True
            if index + 1 == length and name == last_name:
                return False
            raise InvalidArgument(
                f"step {index} ({name!r}) of run {run.id} does not follow its journal, which "
                f"has {length} entries",
                run_id=run.id,
                index=index,
                journal_length=length,
            )

        for command in body.commands:
            kind, value = betterproto2.which_one_of(command, "command")
            if kind == "step_started":
                event(
                    event_data.STEP_STARTED,
                    value.name,
                    event_data.step_started(value.index, value.attempt),
                )
            elif kind == "step_completed":
                entry = value.entry
                if entry is None:
                    raise InvalidArgument("StepCompleted carries no journal entry")
                self.check_size(entry.output, f"the output of step {entry.index}")
                if not follows(entry.index, entry.name):
                    continue
                output = event_data.json_or_null(entry.output)
                entry = dataclasses.replace(
                    entry, output=output, ended_at_ms=entry.ended_at_ms or at
                )
                plan.entries.append(entry)
                length, last_name = length + 1, entry.name
                event(
                    event_data.STEP_COMPLETED,
                    entry.name,
                    event_data.step_completed(entry.index, entry.attempt, output),
                )
            elif kind == "step_failed":
                if not follows(value.index, value.name):
                    continue
                seen = plan.step_attempts.get(value.index, state.step_attempts.get(value.index, 0))
                plan.step_attempts[value.index] = max(seen, value.attempt)
                policy = retry.effective(value.retry, spec.retry if spec else None)
                retryable = value.error is not None and value.error.retryable
                if retryable and value.attempt < policy.max_attempts:
                    plan.retry_at_ms = at + policy.delay_ms(value.attempt)
                    plan.outcome = ReportOutcome.RETRY_SCHEDULED
                    event(
                        event_data.STEP_FAILED,
                        value.name,
                        event_data.step_failed(
                            value.index, value.attempt, value.error, plan.retry_at_ms
                        ),
                    )
                    break  # this attempt of the run ends here
                plan.entries.append(
                    JournalEntry(
                        index=value.index,
                        name=value.name,
                        input_digest=value.input_digest,
                        error=value.error or ErrorInfo(),
                        attempt=value.attempt,
                        started_at_ms=value.started_at_ms,
                        ended_at_ms=at,
                    )
                )
                length, last_name = length + 1, value.name
                plan.outcome = ReportOutcome.STEP_FAILED
                event(
                    event_data.STEP_FAILED,
                    value.name,
                    event_data.step_failed(value.index, value.attempt, value.error, None),
                )
            elif kind == "emit":
                self.check_size(value.data, f"event {value.name!r}")
                event(event_data.CUSTOM, value.name, event_data.json_or_null(value.data))
            elif kind == "run_completed":
                self.check_size(value.result, "the run's result")
                plan.result = event_data.json_or_null(value.result)
                plan.final_status = RunStatus.COMPLETED
                plan.outcome = ReportOutcome.FINISHED
                event(event_data.RUN_COMPLETED, "", plan.result)
                break
            elif kind == "run_failed":
                plan.error = value.error or ErrorInfo(type="Error")
                plan.final_status = RunStatus.FAILED
                plan.outcome = ReportOutcome.FINISHED
                event(event_data.RUN_FAILED, "", event_data.run_error(plan.error))
                break
            else:
                raise InvalidArgument("a report command carries nothing")
        return plan

    # -- applying --------------------------------------------------------------------------------

    def apply(self, record: LogRecord, writes: Writes, plan: CommandsPlan | None = None) -> Applied:
        """Apply one record; ``plan`` is the already computed plan of a ``run_commands`` record
        (the live path plans first, to refuse a bad report before appending it)."""
        kind, body = betterproto2.which_one_of(record, "record")
        if kind == "functions_registered":
            self._functions_registered(body, writes)
            return Applied()
        if kind == "run_started":
            return Applied(state=self._run_started(body, writes))
        if kind == "run_commands":
            state = self._active(body.run_id)
            plan = plan or self.plan_commands(state, body)
            self._run_commands(state, body, plan, writes)
            return Applied(state=state, plan=plan)
        if kind == "run_cancelled":
            return Applied(state=self._run_cancelled(body, writes))
        if kind == "run_retry_scheduled":
            return Applied(state=self._run_retry_scheduled(body, writes))
        raise StorageError(f"log record of unknown kind {kind!r}")

    def _active(self, run_id: str) -> RunState:
        state = self.cache.lookup(run_id)
        if state is None or state.final:
            raise StorageError(f"log record for run {run_id}, which is not active")
        return state

    def _functions_registered(self, body: FunctionsRegistered, writes: Writes) -> None:
        for spec in body.functions:
            self.functions[spec.name] = spec
            writes.put(FUNCTIONS, spec.name.encode(), bytes(spec))

    def _run_started(self, body: RunStarted, writes: Writes) -> RunState:
        accepted = body.run
        if accepted is None:
            raise StorageError("RunStarted record without a run")
        run = dataclasses.replace(
            accepted, status=RunStatus.PENDING, last_event_seq=1, journal_length=0
        )
        started = Event(
            run_id=run.id,
            seq=1,
            type=event_data.RUN_STARTED,
            name=run.function,
            data=event_data.run_started(run.function),
            at_ms=run.created_at_ms,
        )
        state = RunState(run=run, events=[started])
        self.cache.add(state)
        key = run.id.encode()
        writes.put(RUNS, key, bytes(run))
        writes.put(ACTIVE, key, b"")
        writes.put(EVENTS, event_key(run.id, 1), bytes(started))
        if run.idempotency_key:
            writes.put(IDEM, run.idempotency_key.encode(), key)
        self._publish(state, writes)
        return state

    def _run_commands(
        self, state: RunState, body: RunCommands, plan: CommandsPlan, writes: Writes
    ) -> None:
        run = state.run
        for entry in plan.entries:
            state.journal.append(entry)
            writes.put(JOURNAL, journal_key(run.id, entry.index), bytes(entry))
        self._add_events(state, plan.events, writes)
        state.step_attempts.update(plan.step_attempts)
        changes: dict[str, object] = {
            "attempt": max(run.attempt, body.attempt),
            "updated_at_ms": body.at_ms,
            "journal_length": len(state.journal),
            "last_event_seq": run.last_event_seq + len(plan.events),
        }
        if plan.outcome == ReportOutcome.RETRY_SCHEDULED:
            changes["status"] = RunStatus.PENDING
            changes["not_before_ms"] = plan.retry_at_ms
        if plan.final_status is not None:
            changes["status"] = plan.final_status
            changes["result"] = plan.result
            changes["error"] = plan.error
        self._store_run(state, dataclasses.replace(run, **changes), writes)
        self._publish(state, writes)

    def _run_cancelled(self, body: RunCancelled, writes: Writes) -> RunState:
        state = self._active(body.run_id)
        error = ErrorInfo(type=CANCELLED_ERROR_TYPE, message=body.reason or "cancelled")
        run = state.run
        cancelled = Event(
            run_id=run.id,
            seq=run.last_event_seq + 1,
            type=event_data.RUN_CANCELLED,
            data=event_data.run_error(error),
            at_ms=body.at_ms,
        )
        self._add_events(state, [cancelled], writes)
        self._store_run(
            state,
            dataclasses.replace(
                run,
                status=RunStatus.CANCELLED,
                error=error,
                updated_at_ms=body.at_ms,
                last_event_seq=cancelled.seq,
            ),
            writes,
        )
        self._publish(state, writes)
        return state

    def _run_retry_scheduled(self, body: RunRetryScheduled, writes: Writes) -> RunState:
        """Not written by this engine (a retry is part of its report's record); applied for
        completeness of the format."""
        state = self._active(body.run_id)
        run = dataclasses.replace(
            state.run, status=RunStatus.PENDING, not_before_ms=body.retry_at_ms
        )
        self._store_run(state, run, writes)
        self._publish(state, writes)
        return state

    def _add_events(self, state: RunState, events: list[Event], writes: Writes) -> None:
        for event in events:
            state.events.append(event)
            writes.put(EVENTS, event_key(event.run_id, event.seq), bytes(event))

    def _store_run(self, state: RunState, run: Run, writes: Writes) -> None:
        state.run = run
        key = run.id.encode()
        writes.put(RUNS, key, bytes(run))
        if state.final:
            writes.delete(ACTIVE, key)
            # Only once durable: evicted earlier, a lookup would reload the stale running run.
            writes.after_commit(functools.partial(self.cache.finish, state))

    @staticmethod
    def _publish(state: RunState, writes: Writes) -> None:
        """Once durable, show this version of the run to readers and subscribers."""
        run, journal_length = state.run, len(state.journal)
        writes.after_commit(lambda: state.published(run, journal_length))
