"""What both sides of :class:`~trine_core.testing.memory.MemoryEngine` share: a run's state and how
readers see it, the test hooks, and the changes that a start, a signal, a report, a cancellation,
a timer or a retry make to a run (an event written, a wait resolved, a run settled, finished,
cancelled, blocked or retried)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from trine_core import errors
from trine_core.names import check_duration
from trine_core.testing.memory.builds import Builds
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import FINAL_STATUSES, ErrorType, json_problem, status_name
from trine_proto.vocabulary import EventType as _E

CANCEL_GRACE_MS = LEASE_TTL_MS = 30_000
_S, _K = pb.RunStatus, pb.EntryKind


def json_bytes(value: Any, key: str = "", payload: bytes = b"") -> bytes:
    """Compact JSON; with ``key``, one more member holding ``payload`` (JSON already) as is."""
    head = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return head[:-1] + b',"' + key.encode() + b'":' + (payload or b"null") + b"}" if key else head


def error_json(info: pb.ErrorInfo | None) -> dict[str, str]:
    return {"type": info.type if info else "", "message": info.message if info else ""}


def cancelled(run_id: str, reason: str = "") -> pb.ErrorInfo:
    return pb.ErrorInfo(type=ErrorType.CANCELLED, message=reason or f"run {run_id} was cancelled")


@dataclasses.dataclass(eq=False)
class RunState:
    """A run: ``run`` holds the stored fields; counts, update time and overlays are derived."""

    run: pb.Run
    journal: list[pb.JournalEntry] = dataclasses.field(default_factory=list)
    events: list[pb.Event] = dataclasses.field(default_factory=list)
    step_attempts: dict[int, int] = dataclasses.field(default_factory=dict)
    signals: dict[str, deque[bytes]] = dataclasses.field(default_factory=dict)
    lease: tuple[str, str, int, str] | None = None  # id, worker id, attempt, build id
    finished_lease: str = ""
    dispatches: int = 0

    @property
    def final(self) -> bool:
        return self.run.status in FINAL_STATUSES

    @property
    def pending(self) -> list[pb.JournalEntry]:
        return [entry for entry in self.journal if entry.pending]

    def view(self, waiting_for_build: str = "") -> pb.Run:
        """A fresh copy as readers see it: ``running`` with its worker (and that worker's build,
        if the run has none yet) while leased, ``suspended`` with what it waits for (a caller may
        change the copy without changing the run)."""
        run = dataclasses.replace(self.run, waiting=[], journal_length=len(self.journal))
        waits = run.status == _S.PENDING and self.lease is None
        run.waiting_for_build = waiting_for_build if waits else ""
        run.last_event_seq, run.updated_at_ms = len(self.events), self.events[-1].at_ms
        run.kept_signals = [
            pb.KeptSignals(name=name, count=len(kept), bytes=sum(map(len, kept)))
            for name, kept in sorted(self.signals.items())
            if kept and not self.final
        ]
        if run.status == _S.SUSPENDED:
            for e in self.pending:
                wait = pb.Wait(index=e.index, kind=e.kind, name=e.name, until_ms=e.until_ms)
                run.waiting.append(dataclasses.replace(wait, child_run_id=e.child_run_id))
        elif self.lease is not None and not self.final:
            run.status, run.worker_id, run.attempt = _S.RUNNING, self.lease[1], self.lease[2]
            run.build_id = run.build_id or self.lease[3]  # its worker's, until a report sets it
        return run


class Runs:
    """The state, the hooks and the shared changes; the contracts' methods live in the subclasses
    (:mod:`.reads`: ``Backend``; :mod:`.reports`: ``Dispatcher``)."""

    def __init__(
        self, max_payload_bytes: int, functions: Iterable[pb.FunctionSpec], clock: Callable[[], int]
    ) -> None:
        self.max_payload_bytes, self.clock = max_payload_bytes, clock
        self.functions = {spec.name: spec for spec in functions}
        self.calls: list[tuple[str, Any]] = []
        self.open_subscriptions = 0
        self._fail_with: Exception | None = None
        self._runs: dict[str, RunState] = {}  # in creation order, which is id order
        self._keys: dict[str, tuple[str, bytes]] = {}  # idempotency key -> run id, digest
        self._ready: list[str] = []  # run ids, first in line first
        self._leases: dict[str, str] = {}  # lease id -> run id (current while the run says so)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._builds = Builds()

    # -- test hooks ------------------------------------------------------------------------------

    @property
    def fail_with(self) -> Exception | None:
        """While set, every contract call raises it (after being recorded), and so does an open
        subscription, at once (setting it wakes every waiter)."""
        return self._fail_with

    @fail_with.setter
    def fail_with(self, error: Exception | None) -> None:
        self._fail_with = error
        self._wake()

    async def until(self, ready: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Until ``ready()`` holds, checked after every change (any call, a subscription closing);
        TimeoutError if it does not within ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await self._until(ready)

    async def called(self, method: str, count: int = 1, timeout_s: float = 5.0) -> list[Any]:
        """The requests of ``method``'s calls once there are ``count``; TimeoutError if not."""
        await self.until(lambda: sum(name == method for name, _ in self.calls) >= count, timeout_s)
        return [request for name, request in self.calls if name == method]

    def fire_timers(self) -> int:
        """Fire every sleep and signal timeout due by ``clock()``, as the engine's timers would
        (event ``timer.fired``, or ``signal.timed_out`` with the wait resolved with error
        ``SignalTimeout``); a run left waiting for nothing is pending again. How many fired."""
        now, fired = self.clock(), 0
        for state in self._runs.values():
            due = [e for e in state.pending if e.kind in (_K.SLEEP, _K.SIGNAL)]
            due = [e for e in due if 0 < e.until_ms <= now]
            for entry in due:
                if entry.kind == _K.SLEEP:
                    data = {"index": entry.index, "until_ms": entry.until_ms}
                    self._event(state, _E.TIMER_FIRED, entry.name, data)
                    self._resolve(state, entry)
                    continue
                data = {"index": entry.index, "timeout_at_ms": entry.until_ms}
                self._event(state, _E.SIGNAL_TIMED_OUT, entry.name, data)
                seconds = (entry.until_ms - entry.started_at_ms) / 1000
                what = f"no signal {entry.name!r} arrived within {seconds:g}s"
                error = pb.ErrorInfo(type=ErrorType.SIGNAL_TIMEOUT, message=what)
                self._resolve(state, entry, error=error)
            if due:
                fired += len(due)
                self._settle(state)
        return fired

    # -- what both contracts share ---------------------------------------------------------------

    def _record(self, method: str, message: Any) -> None:
        self.calls.append((method, message))
        self._wake()
        if self._fail_with is not None:
            raise self._fail_with

    def _wake(self) -> None:
        """Something changed: every waiter (take_work, wait_run, subscribe, until) re-checks."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()``, with no await between its answer and the caller going on."""
        while not ready():
            await self._changed.wait()

    def _require(self, run_id: str, *, active: bool = False) -> RunState:
        """The run; RunNotFound, or (``active``) RunFinished for a final one."""
        state = self._runs.get(run_id)
        if state is None:
            raise errors.RunNotFound(f"no run {run_id!r}", run_id=run_id)
        if active and state.final:
            status = status_name(state.run.status)
            what = f"run {run_id} already {status}"
            raise errors.RunFinished(what, run_id=run_id, status=status)
        return state

    def _view(self, state: RunState) -> pb.Run:
        """The run as readers see it, with the build a pending pinned run waits for while no
        worker of it asks for work."""
        run, waits_for = state.run, ""
        if self._pinned(run) and not self._builds.connected(run.build_id, self.clock()):
            waits_for = run.build_id
        return state.view(waits_for)

    def _pinned(self, run: pb.Run) -> bool:
        """Whether only a taker of the run's build may continue it."""
        spec = self.functions.get(run.function)
        pinned = spec is not None and spec.versioning == pb.VersioningMode.PINNED
        return pinned and bool(run.build_id)

    def _check_size(self, payload: bytes, what: str) -> bytes:
        """``payload`` (JSON ``null`` when empty); PayloadTooLarge over the limit,
        InvalidArgument when it is not JSON (as the engine's ``json_payload``)."""
        size, limit = len(payload), self.max_payload_bytes
        if size > limit:
            what = f"{what} is {size} bytes; the limit is {limit}"
            raise errors.PayloadTooLarge(what, size=size, limit=limit)
        if payload and (problem := json_problem(payload)) is not None:
            raise errors.InvalidArgument(f"{what} is not JSON: {problem}")
        return payload or b"null"

    def _event(self, state: RunState, type_: _E, name: str, data: Any) -> None:
        raw, seq = data if isinstance(data, bytes) else json_bytes(data), len(state.events) + 1
        event = pb.Event(run_id=state.run.id, seq=seq, type=type_, name=name, data=raw)
        event.at_ms = self.clock()
        state.events.append(event)

    def _start(
        self, spec: pb.FunctionSpec, payload: bytes, timeout: int, **fields: Any
    ) -> RunState:
        """A new run, pending and last in line. Its id has 26 characters, in creation order like
        the engine's ULIDs, and is predictable."""
        run = pb.Run(id=f"01MEM{next(self._ids):021d}", function=spec.name, **fields)
        run.status, run.input, run.created_at_ms = _S.PENDING, payload, self.clock()
        what = f"the timeout of function {spec.name!r}"
        timeout = timeout or check_duration(spec.timeout_ms, what)
        run.deadline_ms = run.created_at_ms + timeout if timeout else 0
        state = self._runs[run.id] = RunState(run=run)
        self._event(state, _E.RUN_STARTED, run.function, {"function": run.function})
        self._ready.append(run.id)
        self._wake()
        return state

    def _resolve(self, state: RunState, entry: pb.JournalEntry, **outcome: Any) -> None:
        """A pending wait resolved in place, with its ``output`` or ``error``."""
        resolved = dataclasses.replace(entry, pending=False, ended_at_ms=self.clock(), **outcome)
        state.journal[entry.index] = resolved

    def _settle(self, state: RunState) -> None:
        """A suspended run whose last wait resolved is pending again, last in line."""
        if state.run.status == _S.SUSPENDED and not state.pending:
            state.run = dataclasses.replace(state.run, status=_S.PENDING)
            self._ready.append(state.run.id)
        self._wake()

    def _finish(self, state: RunState, status: pb.RunStatus, result: bytes, error: Any) -> None:
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

    def _block(self, state: RunState, error: pb.ErrorInfo | None) -> None:
        """Hold the run after a workflow error (its ``run.blocked`` event written): not final, its
        lease ended, waiting for a retry on other code."""
        build = state.lease[3] if state.lease is not None else ""
        state.run = dataclasses.replace(
            state.run, status=_S.BLOCKED, error=error, blocked_build_id=build
        )
        state.lease = None

    def _retry(self, state: RunState, reason: str, *, automatic: bool) -> None:
        """Resume a failed or blocked run: its journal cut at the first entry holding an error
        (the failed step runs again, the steps before it replay), pending again last in line with
        the same id, its error cleared, its step attempts counted afresh and a new deadline of
        its original timeout from now."""
        run, journal, now = state.run, state.journal, self.clock()
        cut = next((e.index for e in journal if e.error is not None), len(journal))
        del journal[cut:]
        timeout = run.deadline_ms - run.created_at_ms if run.deadline_ms else 0
        state.run = dataclasses.replace(
            run,
            status=_S.PENDING,
            error=None,
            result=b"",
            blocked_build_id="",
            retries=run.retries + 1,
            not_before_ms=0,
            deadline_ms=now + timeout if timeout else 0,
        )
        state.step_attempts.clear()
        state.lease, state.finished_lease = None, ""
        data = {"from_index": cut, "reason": reason, "automatic": automatic}
        self._event(state, _E.RUN_RETRIED, run.function, data | {"retries": state.run.retries})
        self._ready.append(run.id)
        self._wake()

    def _cancel(self, state: RunState, reason: str) -> None:
        """At once when there is nothing to clean up (no step, no lease); else requested: its
        waits resolve with ``Cancelled`` (a suspended run is replayed into it), children too."""
        if state.final or state.run.cancel_requested:
            return
        error, deadline = cancelled(state.run.id, reason), self.clock() + CANCEL_GRACE_MS
        if not state.journal and state.lease is None:
            self._event(state, _E.RUN_CANCELLED, state.run.function, error_json(error))
            self._finish(state, _S.CANCELLED, b"", error)
            return self._wake()
        run = state.run
        state.run = dataclasses.replace(run, cancel_requested=True, cancel_deadline_ms=deadline)
        requested = {"reason": reason, "deadline_ms": deadline}
        self._event(state, _E.CANCEL_REQUESTED, run.function, requested)
        for entry in state.pending:
            self._resolve(state, entry, error=error)
            if entry.kind == _K.CHILD and entry.child_run_id in self._runs:
                self._cancel(self._runs[entry.child_run_id], reason or "its parent was cancelled")
        self._settle(state)
