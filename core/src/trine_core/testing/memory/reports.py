"""The ``Dispatcher`` side of :class:`~trine_core.testing.memory.MemoryEngine`: registering
functions, leasing runs out (``take_work``), renewing and releasing leases, and a worker's report:
each command's effect on the run's journal and events, applied whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from typing import Any

from trine_core import errors
from trine_core.testing.memory.runs import LEASE_TTL_MS, Runs, RunState, cancelled, error_json
from trine_core.testing.memory.runs import json_bytes as _json
from trine_proto import retry
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import ErrorType
from trine_proto.vocabulary import EventType as _E

_S, _O, _K = pb.RunStatus, pb.ReportOutcome, pb.EntryKind
_SLEEP = "sleep"
_End = tuple[pb.RunStatus, bytes, pb.ErrorInfo | None]


class Reports(Runs):
    async def register_functions(
        self, message: pb.RegisterFunctionsRequest
    ) -> pb.RegisterFunctionsResponse:
        self._record("register_functions", message)
        if any(not spec.name for spec in message.functions):
            raise errors.InvalidArgument("a function needs a name")
        self.functions.update((spec.name, spec) for spec in message.functions)
        return pb.RegisterFunctionsResponse()

    async def take_work(self, message: pb.TakeWorkRequest) -> pb.TakeWorkResponse:
        """Woken by any change (a start, a release, a resume). Leasing and answering have no await
        between them, so a call cancelled while it waits has taken nothing."""
        self._record("take_work", message)
        items: list[pb.WorkItem] = []

        def take() -> bool:
            items.extend(self._take(message))
            return bool(items)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(message.wait_ms / 1000):
                await self._until(take)
        return pb.TakeWorkResponse(items=items)

    async def report(self, message: pb.ReportRequest) -> pb.ReportResponse:
        """Applied whole or, when a command is refused, not at all."""
        self._record("report", message)
        state, lease_id = self._require(message.run_id), message.lease_id
        commands = message.commands
        if state.lease is None or state.lease[0] != lease_id:
            ends = any(c.run_completed is not None or c.run_failed is not None for c in commands)
            if state.final and ends and lease_id and lease_id == state.finished_lease:
                return pb.ReportResponse(outcome=_O.FINISHED)  # a final report sent again
            what = f"lease {lease_id!r} is not the current lease of run {state.run.id}"
            raise errors.LeaseLost(what, run_id=state.run.id, lease_id=lease_id)
        signals = {name: deque(kept) for name, kept in state.signals.items()}
        saved = (len(state.journal), len(state.events), dict(state.step_attempts), signals)
        try:
            answer, end = self._apply(state, commands)
        except errors.TrineError:
            journal, events, state.step_attempts, state.signals = saved
            for entry in state.journal[journal:]:  # children of the refused report
                self._runs.pop(entry.child_run_id, None)
            del state.journal[journal:], state.events[events:]
            raise
        run = state.run = dataclasses.replace(state.run, attempt=state.lease[2])
        if end is not None:
            answer.outcome, state.finished_lease = _O.FINISHED, lease_id
            self._finish(state, *end)
        elif answer.outcome == _O.RETRY_SCHEDULED:
            state.run = dataclasses.replace(run, not_before_ms=answer.retry_at_ms)
            state.lease = None
            self._ready.append(run.id)
        elif state.pending:
            answer.outcome, state.lease = _O.SUSPENDED, None
            state.run = dataclasses.replace(run, status=_S.SUSPENDED)
        answer.cancel_requested = state.run.cancel_requested
        self._wake()
        return answer

    async def renew_leases(self, message: pb.RenewLeasesRequest) -> pb.RenewLeasesResponse:
        """Leases never expire here: renewing only answers which are gone or cancelling."""
        self._record("renew_leases", message)
        states = {lease_id: self._leased(lease_id) for lease_id in message.lease_ids}
        lost = [lease_id for lease_id, state in states.items() if state is None]
        cancelling = [i for i, state in states.items() if state and state.run.cancel_requested]
        return pb.RenewLeasesResponse(lost=lost, cancel_requested=cancelling)

    async def release_leases(self, message: pb.ReleaseLeasesRequest) -> pb.ReleaseLeasesResponse:
        self._record("release_leases", message)
        for lease_id in message.lease_ids:
            if (state := self._leased(lease_id)) is not None:
                state.lease = None
                self._ready.insert(0, state.run.id)
        self._wake()
        return pb.ReleaseLeasesResponse()

    def _take(self, message: pb.TakeWorkRequest) -> list[pb.WorkItem]:
        """Lease the first runs in line of those functions."""
        items: list[pb.WorkItem] = []
        for run_id in list(self._ready):
            state = self._runs.get(run_id)
            if len(items) >= (message.max_items or 1):
                break
            if state is None or state.lease or state.run.status != _S.PENDING:
                self._ready.remove(run_id)  # stale: cancelled while in line, say
            elif state.run.function in message.functions:
                self._ready.remove(run_id)
                state.dispatches = attempt = max(state.dispatches, state.run.attempt) + 1
                state.lease = (lease_id := f"lease-{next(self._ids)}", message.worker_id, attempt)
                self._leases[lease_id] = run_id
                expires = self.clock() + (message.lease_ttl_ms or LEASE_TTL_MS)
                lease = pb.Lease(id=lease_id, attempt=attempt, expires_at_ms=expires)
                item = pb.WorkItem(run=state.view(), lease=lease, journal=list(state.journal))
                items.append(dataclasses.replace(item, step_attempts=dict(state.step_attempts)))
        return items

    def _leased(self, lease_id: str) -> RunState | None:
        """The run whose current lease this is."""
        state = self._runs.get(self._leases.get(lease_id, ""))
        return state if state and state.lease and state.lease[0] == lease_id else None

    def _apply(
        self, state: RunState, commands: list[pb.Command]
    ) -> tuple[pb.ReportResponse, _End | None]:
        """A report's commands: the answer, and how the run ended if it did."""
        now, run, answer = self.clock(), state.run, pb.ReportResponse(outcome=_O.CONTINUE)
        stop = cancelled(run.id) if run.cancel_requested else None  # it waits for nothing

        def follows(index: int, name: str) -> bool:
            """True at the journal's next position, False for a repeat of its last entry (a
            no-op), InvalidArgument elsewhere."""
            length = len(state.journal)
            if index == length or (index + 1 == length and state.journal[-1].name == name):
                return index == length
            what = f"entry {index} ({name!r}) does not follow the {length} of run {run.id}"
            raise errors.InvalidArgument(what, run_id=run.id, index=index, journal_length=length)

        def wait(kind: pb.EntryKind, index: int, name: str, waits: bool, **fields: Any) -> bool:
            """Journal a wait: pending, or resolved at once (and then in the answer too)."""
            waits = waits and stop is None
            entry = pb.JournalEntry(index=index, name=name, kind=kind, pending=waits, **fields)
            entry.started_at_ms, entry.ended_at_ms = now, 0 if waits else now
            entry.error = stop or entry.error
            state.journal.append(entry)
            if not waits:
                answer.resolved.append(entry)
            return waits

        for command in commands:
            if (started := command.step_started) is not None:
                data: dict[str, Any] = {"index": started.index, "attempt": started.attempt}
                self._event(state, _E.STEP_STARTED, started.name, data)
            elif (completed := command.step_completed) is not None:
                if (entry := completed.entry) is None:
                    raise errors.InvalidArgument("StepCompleted carries no journal entry")
                output = self._check_size(entry.output, f"the output of step {entry.index}")
                if follows(entry.index, entry.name):
                    step = dataclasses.replace(entry, output=output, kind=_K.STEP, pending=False)
                    step.ended_at_ms = step.ended_at_ms or now
                    state.journal.append(step)
                    head = {"index": entry.index, "attempt": entry.attempt}
                    self._event(state, _E.STEP_COMPLETED, entry.name, _json(head, "output", output))
            elif (failed := command.step_failed) is not None:
                if not follows(index := failed.index, name := failed.name):
                    continue
                attempt, error = failed.attempt, failed.error or pb.ErrorInfo()
                state.step_attempts[index] = max(state.step_attempts.get(index, 0), attempt)
                own = self.functions.get(run.function, pb.FunctionSpec()).retry
                policy = retry.effective(failed.retry, own)
                data = {"index": index, "attempt": attempt, "error": error_json(error)}
                if error.retryable and attempt < policy.max_attempts:
                    retry_at = answer.retry_at_ms = now + policy.delay_ms(attempt)
                    answer.outcome = _O.RETRY_SCHEDULED
                    self._event(state, _E.STEP_FAILED, name, data | {"retry_at_ms": retry_at})
                    break
                entry = pb.JournalEntry(index=index, name=name, error=error, attempt=attempt)
                entry.input_digest, entry.started_at_ms = failed.input_digest, failed.started_at_ms
                entry.ended_at_ms, answer.outcome = now, _O.STEP_FAILED
                state.journal.append(entry)
                self._event(state, _E.STEP_FAILED, name, data | {"final": True})
            elif (emit := command.emit) is not None:
                custom = self._check_size(emit.data, f"event {emit.name!r}")
                self._event(state, _E.CUSTOM, emit.name, custom)
            elif (done := command.run_completed) is not None:
                result = self._check_size(done.result, "the run's result")
                self._event(state, _E.RUN_COMPLETED, "", result)
                return answer, (_S.COMPLETED, result, None)
            elif (failure := command.run_failed) is not None:
                error = failure.error or pb.ErrorInfo(type=ErrorType.ERROR)
                ended = run.cancel_requested  # the workflow ended with its cancellation
                self._event(
                    state, _E.RUN_CANCELLED if ended else _E.RUN_FAILED, "", error_json(error)
                )
                return answer, (_S.CANCELLED if ended else _S.FAILED, b"", error)
            elif (sleep := command.sleep) is not None:
                i, until = sleep.index, sleep.until_ms or now + sleep.duration_ms
                if follows(i, _SLEEP) and wait(_K.SLEEP, i, _SLEEP, until > now, until_ms=until):
                    self._event(state, _E.TIMER_STARTED, _SLEEP, {"index": i, "until_ms": until})
            elif (signal := command.wait_signal) is not None:
                if not (name := signal.name):
                    raise errors.InvalidArgument("a signal wait needs the signal's name")
                i, until = signal.index, now + signal.timeout_ms if signal.timeout_ms else 0
                if follows(i, name):
                    kept = state.signals.get(name) if stop is None else None
                    output = kept.popleft() if kept else b""  # the oldest kept signal
                    if wait(_K.SIGNAL, i, name, not output, output=output, until_ms=until):
                        data = {"index": i, "timeout_at_ms": until or None}
                        self._event(state, _E.SIGNAL_WAITING, name, data)
            elif (child := command.start_child) is not None:
                if not follows(index := child.index, name := child.function):
                    continue
                child_input = self._check_size(child.input, f"the input of child run {index}")
                if (spec := self.functions.get(name)) is None or stop is not None:
                    unknown = f"no worker has registered function {name!r}"
                    error = pb.ErrorInfo(type=ErrorType.UNKNOWN_FUNCTION, message=unknown)
                    wait(_K.CHILD, index, name, False, error=error)  # stop comes first
                    continue
                fields = {"parent_run_id": run.id, "parent_index": index}
                child_id = self._start(spec, child_input, child.timeout_ms, **fields).run.id
                wait(_K.CHILD, index, name, True, child_run_id=child_id)
                data = {"index": index, "child_run_id": child_id, "function": name}
                self._event(state, _E.CHILD_STARTED, name, data)
            elif (seen := command.cancel_observed) is not None:
                if follows(seen.index, seen.name):
                    wait(_K.CANCEL, seen.index, seen.name, False, error=cancelled(run.id))
            else:
                raise errors.InvalidArgument("a report command carries nothing")
        return answer, None
