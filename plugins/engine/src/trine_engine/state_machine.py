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
from collections import deque
from collections.abc import Callable
from typing import Protocol

import betterproto2

from trine_core import InvalidArgument, PayloadTooLarge, StorageError
from trine_engine import event_data, retry
from trine_engine.keys import event_key, journal_key
from trine_engine.run_state import RunCache, RunState
from trine_engine.storage import ACTIVE, EVENTS, FUNCTIONS, IDEM, JOURNAL, RUNS, Store
from trine_proto.codec import decode, encode
from trine_proto.trine.engine.v1 import (
    FunctionsRegistered,
    LogRecord,
    RunCommands,
    RunRetryScheduled,
    RunStarted,
    SignalReceived,
    TimerFired,
)
from trine_proto.trine.v1 import (
    EntryKind,
    ErrorInfo,
    Event,
    FunctionSpec,
    JournalEntry,
    ReportOutcome,
    Run,
    RunStatus,
)

CANCELLED_ERROR_TYPE = "Cancelled"
CHILD_CANCELLED_ERROR_TYPE = "ChildCancelled"
SIGNAL_TIMEOUT_ERROR_TYPE = "SignalTimeout"
RUN_TIMEOUT_ERROR_TYPE = "RunTimeout"
UNKNOWN_FUNCTION_ERROR_TYPE = "UnknownFunction"
SLEEP_NAME = "sleep"


class Writes(Protocol):
    """Where derived-state writes go: the batch that carries the record (an ``AppendBatch``)."""

    def put(self, family: str, key: bytes, value: bytes) -> None: ...

    def delete(self, family: str, key: bytes) -> None: ...

    def after_commit(self, callback: Callable[[], None]) -> None: ...


class Scheduler(Protocol):
    """What the engine does about a state change beyond storing it (implemented by the engine)."""

    def ready(self, state: RunState) -> None:
        """The run can be dispatched (called once the change is durable)."""

    def timer(self, state: RunState, index: int, at_ms: int) -> None:
        """The wait at ``index`` resolves at ``at_ms`` unless something resolves it first."""

    def deadline(self, state: RunState, at_ms: int) -> None:
        """The run's deadline (its timeout, or its cancellation's) is at ``at_ms``."""

    def stopped(self, state: RunState) -> None:
        """A record ended the run while a worker may hold it: fence off its lease."""


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
    resolved: list[JournalEntry] = dataclasses.field(default_factory=list)
    """New entries resolved at once (a signal already kept, a past due time): the worker goes
    on with them instead of suspending."""
    children: list[Run] = dataclasses.field(default_factory=list)
    consumed: dict[str, int] = dataclasses.field(default_factory=dict)
    """Kept signals this report's waits take, by name."""


@dataclasses.dataclass(slots=True)
class Applied:
    state: RunState | None = None
    plan: CommandsPlan | None = None


class StateMachine:
    def __init__(self, cache: RunCache, max_payload_bytes: int, scheduler: Scheduler) -> None:
        self.cache = cache
        self.functions: dict[str, FunctionSpec] = {}
        self.max_payload_bytes = max_payload_bytes
        self.scheduler = scheduler

    def load(self, store: Store) -> None:
        """The registered functions (the runs load lazily through the cache)."""
        for key, value in store.scan(FUNCTIONS):
            self.functions[key.decode()] = decode(FunctionSpec, value)

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
                entry = dataclasses.replace(  # a step: whatever wait fields a worker sent
                    entry,
                    output=output,
                    ended_at_ms=entry.ended_at_ms or at,
                    kind=EntryKind.STEP,
                    pending=False,
                    until_ms=0,
                    child_run_id="",
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
            elif kind == "sleep":
                if not follows(value.index, SLEEP_NAME):
                    continue
                until = value.until_ms or at + value.duration_ms
                entry = JournalEntry(
                    index=value.index,
                    name=SLEEP_NAME,
                    kind=EntryKind.SLEEP,
                    started_at_ms=at,
                    until_ms=until,
                )
                length, last_name = length + 1, SLEEP_NAME
                if run.cancel_requested:  # a run being cancelled waits for nothing
                    entry = dataclasses.replace(
                        entry, error=cancelled_error(run.id, ""), ended_at_ms=at
                    )
                    plan.resolved.append(entry)
                elif until <= at:
                    entry = dataclasses.replace(entry, ended_at_ms=at)
                    plan.resolved.append(entry)
                else:
                    entry = dataclasses.replace(entry, pending=True)
                    event(
                        event_data.TIMER_STARTED, SLEEP_NAME, event_data.timer(value.index, until)
                    )
                plan.entries.append(entry)
            elif kind == "wait_signal":
                if not value.name:
                    raise InvalidArgument("a signal wait needs the signal's name")
                if not follows(value.index, value.name):
                    continue
                kept = state.signals.get(value.name, ())
                taken = plan.consumed.get(value.name, 0)
                entry = JournalEntry(
                    index=value.index,
                    name=value.name,
                    kind=EntryKind.SIGNAL,
                    started_at_ms=at,
                    until_ms=at + value.timeout_ms if value.timeout_ms else 0,
                )
                length, last_name = length + 1, value.name
                if run.cancel_requested:
                    entry = dataclasses.replace(
                        entry, error=cancelled_error(run.id, ""), ended_at_ms=at
                    )
                    plan.resolved.append(entry)
                elif taken < len(kept):
                    plan.consumed[value.name] = taken + 1
                    entry = dataclasses.replace(entry, output=kept[taken], ended_at_ms=at)
                    plan.resolved.append(entry)
                else:
                    entry = dataclasses.replace(entry, pending=True)
                    event(
                        event_data.SIGNAL_WAITING,
                        value.name,
                        event_data.signal_waiting(value.index, entry.until_ms),
                    )
                plan.entries.append(entry)
            elif kind == "start_child":
                if not value.run_id:
                    raise InvalidArgument("StartChild carries no run id (the engine assigns it)")
                if not follows(value.index, value.function):
                    continue
                child_input = value.input or b"null"
                self.check_size(child_input, f"the input of child run {value.index}")
                length, last_name = length + 1, value.function
                child_spec = self.functions.get(value.function)
                refusal = None
                if run.cancel_requested:
                    refusal = cancelled_error(run.id, "")
                elif child_spec is None:
                    refusal = ErrorInfo(
                        type=UNKNOWN_FUNCTION_ERROR_TYPE,
                        message=f"no worker has registered function {value.function!r}",
                    )
                if refusal is not None or child_spec is None:
                    entry = JournalEntry(
                        index=value.index,
                        name=value.function,
                        kind=EntryKind.CHILD,
                        error=refusal,
                        started_at_ms=at,
                        ended_at_ms=at,
                    )
                    plan.entries.append(entry)
                    plan.resolved.append(entry)
                    continue
                timeout = value.timeout_ms or child_spec.timeout_ms
                plan.children.append(
                    Run(
                        id=value.run_id,
                        function=value.function,
                        status=RunStatus.PENDING,
                        input=child_input,
                        created_at_ms=at,
                        updated_at_ms=at,
                        parent_run_id=run.id,
                        parent_index=value.index,
                        deadline_ms=at + timeout if timeout else 0,
                    )
                )
                plan.entries.append(
                    JournalEntry(
                        index=value.index,
                        name=value.function,
                        kind=EntryKind.CHILD,
                        pending=True,
                        started_at_ms=at,
                        child_run_id=value.run_id,
                    )
                )
                event(
                    event_data.CHILD_STARTED,
                    value.function,
                    event_data.child_started(value.index, value.run_id, value.function),
                )
            elif kind == "cancel_observed":
                if not follows(value.index, value.name):
                    continue
                entry = JournalEntry(
                    index=value.index,
                    name=value.name,
                    kind=EntryKind.CANCEL,
                    error=cancelled_error(run.id, ""),
                    started_at_ms=at,
                    ended_at_ms=at,
                )
                length, last_name = length + 1, value.name
                plan.entries.append(entry)
                plan.resolved.append(entry)
            elif kind == "run_completed":
                self.check_size(value.result, "the run's result")
                plan.result = event_data.json_or_null(value.result)
                plan.final_status = RunStatus.COMPLETED
                plan.outcome = ReportOutcome.FINISHED
                event(event_data.RUN_COMPLETED, "", plan.result)
                break
            elif kind == "run_failed":
                plan.error = value.error or ErrorInfo(type="Error")
                plan.outcome = ReportOutcome.FINISHED
                if run.cancel_requested:  # ending with an error after a cancel: cancelled
                    plan.final_status = RunStatus.CANCELLED
                    event(event_data.RUN_CANCELLED, "", event_data.run_error(plan.error))
                else:
                    plan.final_status = RunStatus.FAILED
                    event(event_data.RUN_FAILED, "", event_data.run_error(plan.error))
                break
            else:
                raise InvalidArgument("a report command carries nothing")
        if plan.final_status is None and any(e.pending for e in plan.entries):
            plan.outcome = ReportOutcome.SUSPENDED  # it goes on once its waits resolve
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
            state = self._active(body.run_id)
            self._finish(
                state,
                RunStatus.CANCELLED,
                cancelled_error(state.id, body.reason),
                body.at_ms,
                writes,
            )
            return Applied(state=state)
        if kind == "cancel_requested":
            state = self._active(body.run_id)
            self._cancel(state, body.reason, body.at_ms, body.deadline_ms, writes)
            return Applied(state=state)
        if kind == "signal_received":
            return Applied(state=self._signal_received(body, writes))
        if kind == "timer_fired":
            return Applied(state=self._timer_fired(body, writes))
        if kind == "run_timed_out":
            state = self._active(body.run_id)
            error = ErrorInfo(
                type=RUN_TIMEOUT_ERROR_TYPE,
                message=f"run {state.id} did not finish by its deadline",
            )
            self._finish(state, RunStatus.FAILED, error, body.at_ms, writes)
            return Applied(state=state)
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
            writes.put(FUNCTIONS, spec.name.encode(), encode(spec))

    def _run_started(self, body: RunStarted, writes: Writes) -> RunState:
        if body.run is None:
            raise StorageError("RunStarted record without a run")
        return self._create(body.run, writes)

    def _create(self, accepted: Run, writes: Writes) -> RunState:
        """A new run, pending: a started run, or a child of a report's ``StartChild``."""
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
        writes.put(RUNS, key, encode(run))
        writes.put(ACTIVE, key, b"")
        writes.put(EVENTS, event_key(run.id, 1), encode(started))
        if run.idempotency_key:
            writes.put(IDEM, run.idempotency_key.encode(), key)
        if run.deadline_ms:
            self.scheduler.deadline(state, run.deadline_ms)
        self._publish(state, writes)
        writes.after_commit(functools.partial(self.scheduler.ready, state))
        return state

    def _run_commands(
        self, state: RunState, body: RunCommands, plan: CommandsPlan, writes: Writes
    ) -> None:
        run = state.run
        for entry in plan.entries:
            state.journal.append(entry)
            writes.put(JOURNAL, journal_key(run.id, entry.index), encode(entry))
            if entry.pending and entry.until_ms:
                self.scheduler.timer(state, entry.index, entry.until_ms)
        for name, taken in plan.consumed.items():
            kept = state.signals[name]
            for _ in range(taken):
                kept.popleft()
            if not kept:
                del state.signals[name]
        self._add_events(state, plan.events, writes)
        state.step_attempts.update(plan.step_attempts)
        for child in plan.children:
            self._create(child, writes)
        changes: dict[str, object] = {
            "attempt": max(run.attempt, body.attempt),
            "updated_at_ms": body.at_ms,
            "journal_length": len(state.journal),
            "last_event_seq": run.last_event_seq + len(plan.events),
        }
        if plan.outcome == ReportOutcome.RETRY_SCHEDULED:
            changes["status"] = RunStatus.PENDING
            changes["not_before_ms"] = plan.retry_at_ms
        if plan.outcome == ReportOutcome.SUSPENDED:
            changes["status"] = RunStatus.SUSPENDED
        if plan.final_status is not None:
            changes["status"] = plan.final_status
            changes["result"] = plan.result
            changes["error"] = plan.error
        self._store_run(state, dataclasses.replace(run, **changes), writes)
        self._publish(state, writes)

    # -- waits -----------------------------------------------------------------------------------

    def _resolve(
        self,
        state: RunState,
        entry: JournalEntry,
        at: int,
        writes: Writes,
        *,
        output: bytes = b"",
        error: ErrorInfo | None = None,
    ) -> None:
        """Resolve a pending wait; a suspended run with none left is pending again."""
        resolved = dataclasses.replace(
            entry, pending=False, output=output, error=error, ended_at_ms=at
        )
        state.journal[entry.index] = resolved
        writes.put(JOURNAL, journal_key(state.id, entry.index), encode(resolved))

    def _wake_if_done(self, state: RunState, at: int, writes: Writes, events: list[Event]) -> None:
        """Store the run after waits resolved: pending again once none is left."""
        run = state.run
        changes: dict[str, object] = {
            "updated_at_ms": at,
            "last_event_seq": run.last_event_seq + len(events),
        }
        self._add_events(state, events, writes)
        resumed = run.status == RunStatus.SUSPENDED and not state.pending
        if resumed:
            changes["status"] = RunStatus.PENDING
        self._store_run(state, dataclasses.replace(run, **changes), writes)
        self._publish(state, writes)
        if resumed:
            writes.after_commit(functools.partial(self.scheduler.ready, state))

    def _event(
        self, state: RunState, events: list[Event], kind: str, name: str, data: bytes, at: int
    ) -> None:
        seq = state.run.last_event_seq + len(events) + 1
        events.append(Event(run_id=state.id, seq=seq, type=kind, name=name, data=data, at_ms=at))

    def _signal_received(self, body: SignalReceived, writes: Writes) -> RunState:
        state = self._active(body.run_id)
        payload = event_data.json_or_null(body.payload)
        waiting = next(
            (
                e
                for e in state.journal
                if e.pending and e.kind == EntryKind.SIGNAL and e.name == body.name
            ),
            None,
        )
        events: list[Event] = []
        self._event(
            state,
            events,
            event_data.SIGNAL_RECEIVED,
            body.name,
            event_data.signal_received(payload, waiting.index if waiting else None),
            body.at_ms,
        )
        if waiting is None:
            state.signals.setdefault(body.name, deque()).append(payload)
        else:
            self._resolve(state, waiting, body.at_ms, writes, output=payload)
        self._wake_if_done(state, body.at_ms, writes, events)
        return state

    def _timer_fired(self, body: TimerFired, writes: Writes) -> RunState:
        state = self._active(body.run_id)
        entry = state.journal[body.index] if body.index < len(state.journal) else None
        if entry is None or not entry.pending:
            raise StorageError(f"timer of run {state.id} at {body.index}, which does not wait")
        events: list[Event] = []
        if entry.kind == EntryKind.SIGNAL:
            self._event(
                state,
                events,
                event_data.SIGNAL_TIMED_OUT,
                entry.name,
                event_data.signal_waiting(entry.index, entry.until_ms),
                body.at_ms,
            )
            error = ErrorInfo(
                type=SIGNAL_TIMEOUT_ERROR_TYPE,
                message=f"no signal {entry.name!r} arrived within "
                f"{(entry.until_ms - entry.started_at_ms) / 1000:g}s",
            )
            self._resolve(state, entry, body.at_ms, writes, error=error)
        else:
            self._event(
                state,
                events,
                event_data.TIMER_FIRED,
                entry.name,
                event_data.timer(entry.index, entry.until_ms),
                body.at_ms,
            )
            self._resolve(state, entry, body.at_ms, writes)
        self._wake_if_done(state, body.at_ms, writes, events)
        return state

    def _child_finished(self, child: RunState, writes: Writes) -> None:
        """Resolve the parent's wait for ``child``, in the batch that finishes the child."""
        run = child.run
        parent = self.cache.active.get(run.parent_run_id)
        if parent is None or parent.final or run.parent_index >= len(parent.journal):
            return
        entry = parent.journal[run.parent_index]
        if not entry.pending or entry.child_run_id != run.id:
            return  # already resolved (the parent was cancelled)
        at = run.updated_at_ms
        events: list[Event] = []
        status = RunStatus(run.status).name.lower()
        self._event(
            parent,
            events,
            event_data.CHILD_FINISHED,
            run.function,
            event_data.child_finished(entry.index, run.id, status),
            at,
        )
        if run.status == RunStatus.COMPLETED:
            self._resolve(parent, entry, at, writes, output=run.result or b"null")
        else:
            error = run.error or ErrorInfo(type="Error")
            if error.type == CANCELLED_ERROR_TYPE:
                # Not "Cancelled": that type in a parent's journal means the parent's own
                # cancellation, which a replay must tell apart from a child's.
                error = dataclasses.replace(error, type=CHILD_CANCELLED_ERROR_TYPE)
            self._resolve(parent, entry, at, writes, error=error)
        self._wake_if_done(parent, at, writes, events)

    # -- ending ----------------------------------------------------------------------------------

    def _cancel(self, state: RunState, reason: str, at: int, deadline: int, writes: Writes) -> None:
        """Ask the run to stop: its waits resolve with a cancellation the workflow can handle,
        its children are asked too, and it is forced to ``cancelled`` at ``deadline``. A run
        with nothing to clean up (it never took a step) is cancelled at once."""
        if state.final:
            return
        if not state.journal and state.lease is None:
            self._finish(state, RunStatus.CANCELLED, cancelled_error(state.id, reason), at, writes)
            return
        if state.run.cancel_requested:
            return
        events: list[Event] = []
        self._event(
            state,
            events,
            event_data.CANCEL_REQUESTED,
            "",
            event_data.cancel_requested(reason, deadline),
            at,
        )
        state.run = dataclasses.replace(
            state.run, cancel_requested=True, cancel_deadline_ms=deadline
        )
        for entry in state.pending:
            self._resolve(state, entry, at, writes, error=cancelled_error(state.id, reason))
            if entry.kind == EntryKind.CHILD:
                self._cancel_child(entry.child_run_id, reason, at, deadline, writes)
        self.scheduler.deadline(state, deadline)
        self._wake_if_done(state, at, writes, events)

    def _cancel_child(
        self, run_id: str, reason: str, at: int, deadline: int, writes: Writes
    ) -> None:
        child = self.cache.active.get(run_id)
        if child is not None:
            self._cancel(child, reason or "its parent was cancelled", at, deadline, writes)

    def _finish(
        self, state: RunState, status: RunStatus, error: ErrorInfo, at: int, writes: Writes
    ) -> None:
        """End the run now, whatever it was doing (forced cancel, immediate cancel, timeout);
        its unfinished children are cancelled with it."""
        run = state.run
        events: list[Event] = []
        kind = event_data.RUN_CANCELLED if status == RunStatus.CANCELLED else event_data.RUN_FAILED
        self._event(state, events, kind, "", event_data.run_error(error), at)
        self._add_events(state, events, writes)
        waits = state.pending
        for entry in waits:
            self._resolve(state, entry, at, writes, error=error)
        self.scheduler.stopped(state)
        self._store_run(
            state,
            dataclasses.replace(
                run,
                status=status,
                error=error,
                updated_at_ms=at,
                last_event_seq=run.last_event_seq + len(events),
            ),
            writes,
        )
        self._publish(state, writes)
        for entry in waits:
            if entry.kind == EntryKind.CHILD:
                self._cancel_child(entry.child_run_id, "its parent ended", at, at, writes)

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
            writes.put(EVENTS, event_key(event.run_id, event.seq), encode(event))

    def _store_run(self, state: RunState, run: Run, writes: Writes) -> None:
        state.run = run
        key = run.id.encode()
        writes.put(RUNS, key, encode(run))
        if state.final:
            writes.delete(ACTIVE, key)
            # Only once durable: evicted earlier, a lookup would reload the stale running run.
            writes.after_commit(functools.partial(self.cache.finish, state))
            if run.parent_run_id:
                self._child_finished(state, writes)

    @staticmethod
    def _publish(state: RunState, writes: Writes) -> None:
        """Once durable, show this version of the run to readers and subscribers."""
        run, journal_length = state.run, len(state.journal)
        writes.after_commit(lambda: state.published(run, journal_length))


def cancelled_error(run_id: str, reason: str) -> ErrorInfo:
    return ErrorInfo(type=CANCELLED_ERROR_TYPE, message=reason or f"run {run_id} was cancelled")
