"""``MemoryEngine``: a small in-memory engine with both contracts (``memory.backend: Backend``,
``memory.dispatcher: Dispatcher``), for tests that need an engine but not the real one.

Plugin tests should meet the engine's behaviour as docs/internals.md ("Runs") describes it, not a
hand-written fake that drifts from it: this passes the contract suites the engine passes. It models
runs, journals, events (the engine's types and data), idempotency keys, leases as fence tokens,
step retries, sleeps, signals, child runs and cancellation. No timers and no persistence, to stay
small and deterministic: pending sleeps and signal waits never fire by themselves, leases never
expire, and ``deadline_ms``, ``cancel_deadline_ms`` and ``not_before_ms`` are only fields (no run
times out, no cancellation is forced, a retry may be taken at once).

Hooks for tests: ``calls`` (every contract call in order, as ``(method name, request)``: what a
consumer sent); ``await called(method, count)`` (until a consumer working in the background made
it); ``fail_with`` (while set, every contract call raises it, after being recorded); ``clock``
(milliseconds: pass a fixed one for stable times); ``functions=`` (registered without a call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from trine_core import errors
from trine_core.names import check_signal_name
from trine_core.protocols import Backend, Dispatcher
from trine_core.settings import MAX_PAYLOAD_BYTES
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import FINAL_EVENT_TYPES, FINAL_STATUSES, ErrorType, status_name
from trine_proto.vocabulary import EventType as _E

__all__ = ["MemoryEngine"]

CANCEL_GRACE_MS = LEASE_TTL_MS = 30_000
DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 50, 1000
_S, _O, _K = pb.RunStatus, pb.ReportOutcome, pb.EntryKind
_SLEEP = "sleep"
_End = tuple[pb.RunStatus, bytes, pb.ErrorInfo | None]


def _json(value: Any, key: str = "", payload: bytes = b"") -> bytes:
    """Compact JSON; with ``key``, one more member holding ``payload`` (JSON already) as is."""
    head = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return head[:-1] + b',"' + key.encode() + b'":' + (payload or b"null") + b"}" if key else head


def _error(info: pb.ErrorInfo | None) -> dict[str, str]:
    return {"type": info.type if info else "", "message": info.message if info else ""}


def _cancelled(run_id: str, reason: str = "") -> pb.ErrorInfo:
    return pb.ErrorInfo(type=ErrorType.CANCELLED, message=reason or f"run {run_id} was cancelled")


def _delay_ms(policy: pb.RetryPolicy, attempt: int) -> int:
    """The engine's backoff, without jitter: initial * coefficient^(attempt-1), capped."""
    growth = (policy.backoff_coefficient or 2.0) ** min(max(attempt - 1, 0), 30)
    delay = (policy.initial_interval_ms or 100) * growth
    return int(max(0, min(delay, policy.max_interval_ms or 10_000)))


@dataclasses.dataclass(eq=False)
class _State:
    """A run: ``run`` holds the stored fields; counts, update time and overlays are derived."""

    run: pb.Run
    journal: list[pb.JournalEntry] = dataclasses.field(default_factory=list)
    events: list[pb.Event] = dataclasses.field(default_factory=list)
    step_attempts: dict[int, int] = dataclasses.field(default_factory=dict)
    signals: dict[str, deque[bytes]] = dataclasses.field(default_factory=dict)
    lease: tuple[str, str, int] | None = None  # id, worker id, attempt
    finished_lease: str = ""
    dispatches: int = 0

    @property
    def final(self) -> bool:
        return self.run.status in FINAL_STATUSES

    @property
    def pending(self) -> list[pb.JournalEntry]:
        return [entry for entry in self.journal if entry.pending]

    def view(self) -> pb.Run:
        """A fresh copy as readers see it: ``running`` with its worker while leased, ``suspended``
        with what it waits for (a caller may change the copy without changing the run)."""
        run = dataclasses.replace(self.run, waiting=[], journal_length=len(self.journal))
        run.last_event_seq, run.updated_at_ms = len(self.events), self.events[-1].at_ms
        if run.status == _S.SUSPENDED:
            for e in self.pending:
                wait = pb.Wait(index=e.index, kind=e.kind, name=e.name, until_ms=e.until_ms)
                run.waiting.append(dataclasses.replace(wait, child_run_id=e.child_run_id))
        elif self.lease is not None and not self.final:
            run.status, run.worker_id, run.attempt = _S.RUNNING, self.lease[1], self.lease[2]
        return run


class MemoryEngine:
    """Both contracts over one in-memory state (see the module docstring). ``backend`` and
    ``dispatcher`` are this object, typed as the contract a consumer needs."""

    def __init__(
        self,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES.default,
        *,
        functions: Iterable[pb.FunctionSpec] = (),
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.max_payload_bytes, self.clock = max_payload_bytes, clock
        self.functions = {spec.name: spec for spec in functions}
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: errors.TrineError | None = None
        self.backend: Backend = self
        self.dispatcher: Dispatcher = self
        self._runs: dict[str, _State] = {}  # in creation order, which is id order
        self._keys: dict[str, str] = {}  # idempotency key -> run id
        self._ready: list[str] = []  # run ids, first in line first
        self._leases: dict[str, str] = {}  # lease id -> run id (current while the run says so)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    async def called(self, method: str, count: int = 1, timeout_s: float = 5.0) -> list[Any]:
        """The requests of ``method``'s calls once there are ``count``; TimeoutError if not."""
        async with asyncio.timeout(timeout_s):
            await self._until(lambda: sum(name == method for name, _ in self.calls) >= count)
        return [request for name, request in self.calls if name == method]

    # -- Backend ---------------------------------------------------------------------------------

    async def start_run(self, message: pb.StartRunRequest) -> pb.StartRunResponse:
        self._record("start_run", message)
        spec, key = self.functions.get(message.function), message.idempotency_key
        if spec is None:
            what = f"no worker has registered function {message.function!r}"
            raise errors.UnknownFunction(
                what, function=message.function, known=sorted(self.functions)
            )
        payload = self._check_size(message.input, "the run's input")
        if key in self._keys:
            return pb.StartRunResponse(run=self._runs[self._keys[key]].view(), created=False)
        state = self._start(spec, payload, message.timeout_ms, idempotency_key=key)
        if key:
            self._keys[key] = state.run.id
        return pb.StartRunResponse(run=state.view(), created=True)

    async def get_run(self, message: pb.GetRunRequest) -> pb.Run:
        self._record("get_run", message)
        return self._require(message.run_id).view()

    async def wait_run(self, message: pb.WaitRunRequest) -> pb.Run:
        self._record("wait_run", message)
        state = self._require(message.run_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(message.timeout_ms / 1000):
                await self._until(lambda: state.final)
        return state.view()

    async def list_runs(self, message: pb.ListRunsRequest) -> pb.ListRunsResponse:
        self._record("list_runs", message)
        limit, status = min(message.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT), message.status
        runs = [s.view() for run_id, s in self._runs.items() if run_id > message.page_token]
        runs = [r for r in runs if status in (_S.UNSPECIFIED, r.status)]
        runs = [r for r in runs if message.function in ("", r.function)]
        token = runs[limit - 1].id if len(runs) > limit else ""
        return pb.ListRunsResponse(runs=runs[:limit], next_page_token=token)

    async def subscribe(self, message: pb.SubscribeRequest) -> AsyncIterator[pb.Event]:
        """Recorded once iterated (an async generator, like the engine's)."""
        self._record("subscribe", message)
        state, sent = self._require(message.run_id), message.after_seq

        def news() -> bool:
            return len(state.events) > sent or state.final

        while True:
            await self._until(news)
            if sent >= len(state.events):
                return  # final, and after_seq was past its last event
            sent += 1
            yield state.events[sent - 1]
            if state.events[sent - 1].type in FINAL_EVENT_TYPES:
                return

    async def cancel_run(self, message: pb.CancelRunRequest) -> pb.Run:
        self._record("cancel_run", message)
        state = self._require(message.run_id, active=True)
        self._cancel(state, message.reason)
        return state.view()

    async def signal_run(self, message: pb.SignalRunRequest) -> pb.SignalRunResponse:
        self._record("signal_run", message)
        check_signal_name(name := message.name)
        payload = self._check_size(message.payload, f"signal {name!r}")
        try:
            json.loads(payload)
        except ValueError as exc:
            raise errors.InvalidArgument(f"signal {name!r}'s payload is not JSON: {exc}") from exc
        state = self._require(message.run_id, active=True)
        wait = next((e for e in state.pending if e.kind == _K.SIGNAL and e.name == name), None)
        data = _json({"delivered_to": wait.index if wait else None}, "payload", payload)
        self._event(state, _E.SIGNAL_RECEIVED, name, data)
        if wait is None:  # kept for the run's next wait of that name
            state.signals.setdefault(name, deque()).append(payload)
        else:
            self._resolve(state, wait, output=payload)
        self._settle(state)
        return pb.SignalRunResponse(run=state.view(), delivered=wait is not None)

    async def get_journal(self, message: pb.GetJournalRequest) -> pb.GetJournalResponse:
        self._record("get_journal", message)
        return pb.GetJournalResponse(entries=list(self._require(message.run_id).journal))

    async def list_functions(self, message: pb.ListFunctionsRequest) -> pb.ListFunctionsResponse:
        self._record("list_functions", message)
        specs = [self.functions[name] for name in sorted(self.functions)]
        return pb.ListFunctionsResponse(functions=specs)

    # -- Dispatcher ------------------------------------------------------------------------------

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

    # -- what both share -------------------------------------------------------------------------

    def _record(self, method: str, message: Any) -> None:
        self.calls.append((method, message))
        self._wake()
        if self.fail_with is not None:
            raise self.fail_with

    def _wake(self) -> None:
        """Something changed: every waiter (take_work, wait_run, subscribe, called) re-checks."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()``, with no await between its answer and the caller going on."""
        while not ready():
            await self._changed.wait()

    def _require(self, run_id: str, *, active: bool = False) -> _State:
        """The run; RunNotFound, or (``active``) RunFinished for a final one."""
        state = self._runs.get(run_id)
        if state is None:
            raise errors.RunNotFound(f"no run {run_id!r}", run_id=run_id)
        if active and state.final:
            status = status_name(state.run.status)
            what = f"run {run_id} already {status}"
            raise errors.RunFinished(what, run_id=run_id, status=status)
        return state

    def _check_size(self, payload: bytes, what: str) -> bytes:
        """``payload`` (JSON ``null`` when empty); PayloadTooLarge over the limit."""
        size, limit = len(payload), self.max_payload_bytes
        if size > limit:
            what = f"{what} is {size} bytes; the limit is {limit}"
            raise errors.PayloadTooLarge(what, size=size, limit=limit)
        return payload or b"null"

    def _event(self, state: _State, type_: _E, name: str, data: Any) -> None:
        raw, seq = data if isinstance(data, bytes) else _json(data), len(state.events) + 1
        event = pb.Event(run_id=state.run.id, seq=seq, type=type_, name=name, data=raw)
        event.at_ms = self.clock()
        state.events.append(event)

    def _start(self, spec: pb.FunctionSpec, payload: bytes, timeout: int, **fields: Any) -> _State:
        """A new run, pending and last in line. Its id has 26 characters, in creation order like
        the engine's ULIDs, and is predictable."""
        run = pb.Run(id=f"01MEM{next(self._ids):021d}", function=spec.name, **fields)
        run.status, run.input, run.created_at_ms = _S.PENDING, payload, self.clock()
        timeout = timeout or spec.timeout_ms
        run.deadline_ms = run.created_at_ms + timeout if timeout else 0
        state = self._runs[run.id] = _State(run=run)
        self._event(state, _E.RUN_STARTED, run.function, {"function": run.function})
        self._ready.append(run.id)
        self._wake()
        return state

    def _resolve(self, state: _State, entry: pb.JournalEntry, **outcome: Any) -> None:
        """A pending wait resolved in place, with its ``output`` or ``error``."""
        resolved = dataclasses.replace(entry, pending=False, ended_at_ms=self.clock(), **outcome)
        state.journal[entry.index] = resolved

    def _settle(self, state: _State) -> None:
        """A suspended run whose last wait resolved is pending again, last in line."""
        if state.run.status == _S.SUSPENDED and not state.pending:
            state.run = dataclasses.replace(state.run, status=_S.PENDING)
            self._ready.append(state.run.id)
        self._wake()

    def _finish(self, state: _State, status: pb.RunStatus, result: bytes, error: Any) -> None:
        """End the run (its event written): its lease ends, its parent's wait for it resolves."""
        run = state.run = dataclasses.replace(state.run, status=status, result=result, error=error)
        state.lease = None
        parent = self._runs.get(run.parent_run_id)
        if parent is None or parent.final or run.parent_index >= len(parent.journal):
            return
        entry = parent.journal[run.parent_index]
        if not entry.pending or entry.child_run_id != run.id:
            return  # resolved already: the parent was cancelled
        data = {"index": entry.index, "child_run_id": run.id, "status": status_name(status)}
        self._event(parent, _E.CHILD_FINISHED, run.function, data)
        if status == _S.COMPLETED:
            self._resolve(parent, entry, output=result)
        else:  # not "Cancelled": in the parent's journal that means the parent's own cancellation
            error = error or pb.ErrorInfo(type=ErrorType.ERROR)
            if error.type == ErrorType.CANCELLED:
                error = dataclasses.replace(error, type=ErrorType.CHILD_CANCELLED)
            self._resolve(parent, entry, error=error)
        self._settle(parent)

    def _cancel(self, state: _State, reason: str) -> None:
        """At once when there is nothing to clean up (no step, no lease); else requested: its
        waits resolve with ``Cancelled`` (a suspended run is replayed into it), children too."""
        if state.final or state.run.cancel_requested:
            return
        error, deadline = _cancelled(state.run.id, reason), self.clock() + CANCEL_GRACE_MS
        if not state.journal and state.lease is None:
            self._event(state, _E.RUN_CANCELLED, "", _error(error))
            self._finish(state, _S.CANCELLED, b"", error)
            return self._wake()
        run = state.run
        state.run = dataclasses.replace(run, cancel_requested=True, cancel_deadline_ms=deadline)
        self._event(state, _E.CANCEL_REQUESTED, "", {"reason": reason, "deadline_ms": deadline})
        for entry in state.pending:
            self._resolve(state, entry, error=error)
            if entry.kind == _K.CHILD and entry.child_run_id in self._runs:
                self._cancel(self._runs[entry.child_run_id], reason or "its parent was cancelled")
        self._settle(state)

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

    def _leased(self, lease_id: str) -> _State | None:
        """The run whose current lease this is."""
        state = self._runs.get(self._leases.get(lease_id, ""))
        return state if state and state.lease and state.lease[0] == lease_id else None

    def _apply(
        self, state: _State, commands: list[pb.Command]
    ) -> tuple[pb.ReportResponse, _End | None]:
        """A report's commands: the answer, and how the run ended if it did."""
        now, run, answer = self.clock(), state.run, pb.ReportResponse(outcome=_O.CONTINUE)
        stop = _cancelled(run.id) if run.cancel_requested else None  # it waits for nothing

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
                policy = (own if failed.retry is None else failed.retry) or pb.RetryPolicy()
                data = {"index": index, "attempt": attempt, "error": _error(error)}
                if error.retryable and attempt < (policy.max_attempts or 3):
                    retry_at = answer.retry_at_ms = now + _delay_ms(policy, attempt)
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
                cancelled = run.cancel_requested  # the workflow ended with its cancellation
                self._event(
                    state, _E.RUN_CANCELLED if cancelled else _E.RUN_FAILED, "", _error(error)
                )
                return answer, (_S.CANCELLED if cancelled else _S.FAILED, b"", error)
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
                    wait(_K.CANCEL, seen.index, seen.name, False, error=_cancelled(run.id))
            else:
                raise errors.InvalidArgument("a report command carries nothing")
        return answer, None
