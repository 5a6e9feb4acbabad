"""A small in-memory Backend for the gateway's unit tests, and an SSE reader.

It keeps the contract's observable behaviour (docs/internals.md, "Starting, reading,
cancelling"): idempotency keys, run deadlines, ``wait_run`` with a timeout, id-ordered pages,
subscriptions that replay then follow and end after the final event, cancellation (at once for a
run that never took a step, else requested with a deadline), signals (delivered to a pending
signal wait of that name, else kept). Tests drive runs with :meth:`FakeBackend.emit`,
:meth:`FakeBackend.finish`, :meth:`FakeBackend.suspend` and :meth:`FakeBackend.cancelled`, and
observe waits and subscriptions through asyncio events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from trine_core import PayloadTooLarge, RunFinished, RunNotFound, UnknownFunction
from trine_proto.trine.v1 import (
    CancelRunRequest,
    EntryKind,
    ErrorInfo,
    Event,
    FunctionSpec,
    GetJournalRequest,
    GetJournalResponse,
    GetRunRequest,
    JournalEntry,
    ListFunctionsRequest,
    ListFunctionsResponse,
    ListRunsRequest,
    ListRunsResponse,
    RetryPolicy,
    Run,
    RunStatus,
    SignalRunRequest,
    SignalRunResponse,
    StartRunRequest,
    StartRunResponse,
    SubscribeRequest,
    Wait,
    WaitRunRequest,
)
from trine_proto.vocabulary import FINAL_EVENT_TYPES, FINAL_STATUSES, EventType

T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
CANCEL_GRACE_MS = 30_000
WAIT_EVENTS = {
    EntryKind.SLEEP: EventType.TIMER_STARTED,
    EntryKind.SIGNAL: EventType.SIGNAL_WAITING,
    EntryKind.CHILD: EventType.CHILD_STARTED,
}


class FakeBackend:
    def __init__(self, max_payload_bytes: int = 1024) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.functions = {
            "order": FunctionSpec(
                name="order",
                retry=RetryPolicy(
                    max_attempts=5,
                    initial_interval_ms=100,
                    max_interval_ms=10_000,
                    backoff_coefficient=1.1,
                ),
            ),
            "echo": FunctionSpec(name="echo"),
        }
        self.runs: dict[str, Run] = {}
        self.events: dict[str, list[Event]] = {}
        self.journals: dict[str, list[JournalEntry]] = {}
        self.idempotency: dict[str, str] = {}
        self.started: list[StartRunRequest] = []
        self.signals: list[SignalRunRequest] = []
        """Every signal taken (delivered or kept), in order."""
        self._ids = itertools.count(1)
        self._changed: dict[str, asyncio.Condition] = {}
        self.waiting = asyncio.Event()
        """Set when a ``wait_run`` call begins waiting."""
        self.subscribed = asyncio.Event()
        self.subscription_closed = asyncio.Event()
        self.open_subscriptions = 0
        self.fail_with: BaseException | None = None
        """Raised by every call when set (to test error mapping)."""
        self.fail_subscriptions: BaseException | None = None
        """Raised by open subscriptions when they wake up next."""

    # -- driving runs -----------------------------------------------------------------------

    def _condition(self, run_id: str) -> asyncio.Condition:
        return self._changed.setdefault(run_id, asyncio.Condition())

    async def emit(self, run_id: str, type_: str, name: str = "", data: Any = None) -> Event:
        events = self.events[run_id]
        raw = b"" if data is None else json.dumps(data).encode()
        event = Event(
            run_id=run_id, seq=len(events) + 1, type=type_, name=name, data=raw, at_ms=T0 + 1
        )
        events.append(event)
        run = self.runs[run_id]
        run.last_event_seq = event.seq
        run.updated_at_ms = T0 + len(events)
        changed = self._condition(run_id)
        async with changed:
            changed.notify_all()
        return event

    async def finish(self, run_id: str, result: Any) -> None:
        run = self.runs[run_id]
        run.status = RunStatus.COMPLETED
        run.result = json.dumps(result).encode()
        run.worker_id = ""
        await self.emit(run_id, EventType.RUN_COMPLETED, data={"result": result})

    async def suspend(self, run_id: str, *entries: JournalEntry) -> None:
        """Journal pending waits and suspend the run on them, as a worker's report would."""
        run = self.runs[run_id]
        for entry in entries:
            entry.pending = True
            self.journals[run_id].append(entry)
        run.status = RunStatus.SUSPENDED
        run.worker_id = ""
        run.journal_length = len(self.journals[run_id])
        run.waiting = [
            Wait(
                index=e.index,
                kind=e.kind,
                name=e.name,
                until_ms=e.until_ms,
                child_run_id=e.child_run_id,
            )
            for e in self.journals[run_id]
            if e.pending
        ]
        for entry in entries:
            await self.emit(run_id, WAIT_EVENTS[entry.kind], entry.name, {"index": entry.index})

    async def cancelled(self, run_id: str) -> None:
        """The workflow finished cleaning up after a requested cancellation (or the grace
        deadline passed): the run is cancelled."""
        run = self.runs[run_id]
        run.status = RunStatus.CANCELLED
        run.worker_id = ""
        run.waiting = []
        run.error = ErrorInfo(type="Cancelled", message="cancelled")
        await self.emit(run_id, EventType.RUN_CANCELLED)

    async def fail(self, run_id: str, message: str) -> None:
        run = self.runs[run_id]
        run.status = RunStatus.FAILED
        run.error = ErrorInfo(type="ValueError", message=message, traceback="Traceback …")
        await self.emit(run_id, EventType.RUN_FAILED)

    # -- the Backend contract ---------------------------------------------------------------

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def _run(self, run_id: str) -> Run:
        self._check()
        try:
            return self.runs[run_id]
        except KeyError:
            raise RunNotFound(f"no run {run_id}") from None

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        self._check()
        self.started.append(message)
        if message.function not in self.functions:
            raise UnknownFunction(
                f"unknown function {message.function!r}", known=sorted(self.functions)
            )
        if len(message.input) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"input is {len(message.input)} bytes, more than {self.max_payload_bytes}"
            )
        if message.idempotency_key and message.idempotency_key in self.idempotency:
            earlier = self.runs[self.idempotency[message.idempotency_key]]
            return StartRunResponse(run=earlier, created=False)
        run_id = f"01H{next(self._ids):023d}"
        run = Run(
            id=run_id,
            function=message.function,
            status=RunStatus.PENDING,
            input=message.input,
            idempotency_key=message.idempotency_key,
            created_at_ms=T0,
            updated_at_ms=T0,
            deadline_ms=T0 + message.timeout_ms if message.timeout_ms else 0,
        )
        self.runs[run_id] = run
        self.events[run_id] = []
        self.journals[run_id] = []
        if message.idempotency_key:
            self.idempotency[message.idempotency_key] = run_id
        await self.emit(run_id, EventType.RUN_STARTED)
        if message.function == "echo":  # finishes at once
            await self.finish(run_id, json.loads(message.input or b"null"))
        return StartRunResponse(run=run, created=True)

    async def get_run(self, message: GetRunRequest) -> Run:
        return self._run(message.run_id)

    async def wait_run(self, message: WaitRunRequest) -> Run:
        run = self._run(message.run_id)
        changed = self._condition(run.id)
        async with changed:
            self.waiting.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    changed.wait_for(lambda: run.status in FINAL_STATUSES),
                    message.timeout_ms / 1000,
                )
        return run

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        self._check()
        limit = message.limit or 50
        selected = [
            run
            for run_id, run in sorted(self.runs.items())
            if run_id > message.page_token
            and (message.status == RunStatus.UNSPECIFIED or run.status == message.status)
            and (not message.function or run.function == message.function)
        ]
        page = selected[:limit]
        more = len(selected) > limit
        return ListRunsResponse(runs=page, next_page_token=page[-1].id if more else "")

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        events = self.events[self._run(message.run_id).id]
        self.open_subscriptions += 1
        self.subscribed.set()
        seq = message.after_seq
        try:
            while True:
                while seq < len(events):
                    if self.fail_subscriptions is not None:
                        raise self.fail_subscriptions
                    event = events[seq]
                    seq += 1
                    yield event
                    if event.type in FINAL_EVENT_TYPES:
                        return
                if events and events[-1].type in FINAL_EVENT_TYPES:
                    return
                changed = self._condition(message.run_id)
                async with changed:
                    await changed.wait_for(functools.partial(_longer, events, seq))
        finally:
            self.open_subscriptions -= 1
            self.subscription_closed.set()

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        run = self._run(message.run_id)
        if run.status in FINAL_STATUSES:
            raise RunFinished(f"run {run.id} is already {run.status.name.lower()}")
        if run.cancel_requested:
            return run
        if not self.journals[run.id] and not run.worker_id:  # nothing to clean up
            run.status = RunStatus.CANCELLED
            run.error = ErrorInfo(type="Cancelled", message=message.reason or "cancelled")
            await self.emit(run.id, EventType.RUN_CANCELLED, data={"reason": message.reason})
            return run
        run.cancel_requested = True
        run.cancel_deadline_ms = T0 + CANCEL_GRACE_MS
        await self.emit(run.id, EventType.CANCEL_REQUESTED, data={"reason": message.reason})
        return run

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        run = self._run(message.run_id)
        if run.status in FINAL_STATUSES:
            raise RunFinished(f"run {run.id} already {run.status.name.lower()}")
        payload = message.payload or b"null"
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"signal {message.name!r} is {len(payload)} bytes, more than "
                f"{self.max_payload_bytes}"
            )
        self.signals.append(message)
        waiting = [
            entry
            for entry in self.journals[run.id]
            if entry.pending and entry.kind == EntryKind.SIGNAL and entry.name == message.name
        ]
        if waiting:
            entry = waiting[0]
            entry.pending = False
            entry.output = payload
            entry.ended_at_ms = T0 + 1
            run.waiting = [w for w in run.waiting if w.index != entry.index]
            if not run.waiting:
                run.status = RunStatus.PENDING
        await self.emit(run.id, EventType.SIGNAL_RECEIVED, message.name, json.loads(payload))
        return SignalRunResponse(run=run, delivered=bool(waiting))

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        return GetJournalResponse(entries=self.journals[self._run(message.run_id).id])

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        self._check()
        return ListFunctionsResponse(functions=list(self.functions.values()))


def _longer(events: list[Event], than: int) -> bool:
    return len(events) > than


@dataclass
class Sse:
    """What an event stream carried: its events (``id``, ``event``, parsed ``data``), comments."""

    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False


class SseReader:
    """Reads one response's frames across several calls (a test acts between them)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def read(self, limit: int | None = None, until_comment: bool = False) -> Sse:
        """Frames until the stream ends, ``limit`` events came, or (``until_comment``) a
        comment."""
        sse = Sse()
        current: dict[str, Any] = {}
        async for line in self._lines:
            if line.startswith(":"):
                sse.comments.append(line[1:].strip())
                if until_comment:
                    return sse
                continue
            if not line:
                if current:
                    sse.events.append(current)
                    if limit is not None and len(sse.events) >= limit:
                        return sse
                current = {}
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[key] = json.loads(value) if key == "data" else value
        sse.ended = True
        return sse


async def read_sse(response: httpx.Response, limit: int | None = None) -> Sse:
    return await SseReader(response).read(limit)
