"""The engine's ``Backend``: what the gateway asks of it (start, read, list, wait for, subscribe
to, signal, cancel, retry and move runs; list builds).

A change is checked against the in-memory state and appended with no ``await`` in between, so two
calls never both pass a check only one of them may pass; the answer waits for durability. Reads
answer from durable state only (``RunState.durable_run``, the durable part of the journal and the
events); a read of a run whose creation is still in flight waits for the log's barrier.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Iterator

from trine_core import (
    Backend,
    RunFinished,
    Unavailable,
    UnknownFunction,
    check_duration,
    check_signal_name,
    tracing,
)
from trine_core.errors import RunNotRetryable, UnknownBuild
from trine_core.idempotency import check_same_request, request_digest
from trine_engine import kept_signals, ulid
from trine_engine.clock import Clock
from trine_engine.idem import split_idem_row
from trine_engine.kept_signals import KeptSignalLimits
from trine_engine.machine import StateMachine, apply_retry
from trine_engine.run_state import RunCache, RunState
from trine_engine.storage import PartitionLog, Store
from trine_engine.storage.keys import IDEM, RUNS
from trine_engine.ulid import UlidGenerator
from trine_proto.codec import decode
from trine_proto.trine.engine.v1 import (
    CancelRequested,
    LogRecord,
    RunMoved,
    RunRetried,
    RunStarted,
    SignalReceived,
)
from trine_proto.trine.v1 import (
    CancelRunRequest,
    EntryKind,
    Event,
    GetJournalRequest,
    GetJournalResponse,
    GetRunRequest,
    ListBuildsRequest,
    ListBuildsResponse,
    ListFunctionsRequest,
    ListFunctionsResponse,
    ListRunsRequest,
    ListRunsResponse,
    MoveRunRequest,
    RetryRunRequest,
    Run,
    RunStatus,
    SignalRunRequest,
    SignalRunResponse,
    StartRunRequest,
    StartRunResponse,
    SubscribeRequest,
    WaitRunRequest,
)
from trine_proto.vocabulary import FINAL_EVENT_TYPES, FINAL_STATUSES, status_name

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
MAX_WAIT_RUN_MS = 300_000
"""The longest a ``wait_run`` long-polls, whoever asks (the gateway's ``wait`` is at most 300 s):
a longer ``wait_ms`` is clamped, so no caller holds a waiter for ever (issue 13)."""


class EngineBackend(Backend):
    def __init__(
        self,
        plog: PartitionLog,
        cache: RunCache,
        machine: StateMachine,
        store: Store,
        clock: Clock,
        ids: UlidGenerator,
        cancel_grace_ms: int,
        kept_limits: KeptSignalLimits,
    ) -> None:
        self.kept_limits = kept_limits
        """The caps on a run's kept signals (see kept_signals)."""
        self._plog = plog
        self._cache = cache
        self._machine = machine
        self._store = store
        self._clock = clock
        self._ids = ids
        self._cancel_grace_ms = cancel_grace_ms
        self._recent_keys: dict[str, tuple[str, bytes]] = {}
        """Idempotency keys accepted but maybe not durable yet (RocksDB has the others): the run
        id and request digest of each."""

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        """The run accepted (or the earlier one of its idempotency key); with ``wait_ms``, then
        waited for as ``wait_run`` waits, in the same call (``waited``): the gateway's
        ``POST /v1/runs?wait`` costs one call, not a start and a wait."""
        answer = await self._accept(message)
        if message.wait_ms <= 0 or answer.run is None:
            return answer
        run = await self.wait_run(WaitRunRequest(run_id=answer.run.id, wait_ms=message.wait_ms))
        return StartRunResponse(run=run, created=answer.created, waited=True)

    async def _accept(self, message: StartRunRequest) -> StartRunResponse:
        self._plog.ensure_writable()
        function = message.function
        functions = self._machine.functions
        if function not in functions:
            known = sorted(functions)
            listed = ", ".join(known) if known else "none registered yet"
            raise UnknownFunction(
                f"no worker has registered function {function!r} (known: {listed})",
                function=function,
                known=known,
            )
        payload = self._machine.json_payload(message.input, "the run's input")
        key = message.idempotency_key
        digest = request_digest(function, payload, message.timeout_ms) if key else b""
        if key:
            found = self._idempotent(key)
            if found is not None:
                earlier, stored = found
                check_same_request(key, stored, digest, earlier.run, function, payload)
                await self._durable_view(earlier)
                return StartRunResponse(run=self._view(earlier), created=False)
        if not tracing.enabled():
            return await self._start(message, function, payload, key, digest, None)
        with tracing.span(f"trine.accept {function}", message.trace_context) as span:
            return await self._start(message, function, payload, key, digest, span)

    async def _start(
        self,
        message: StartRunRequest,
        function: str,
        payload: bytes,
        key: str,
        digest: bytes,
        span: tracing.Span | None,
    ) -> StartRunResponse:
        """A new run, durable before the answer; with a span, the run's trace is its."""
        functions = self._machine.functions
        now = self._clock.now_ms()
        timeout = check_duration(
            message.timeout_ms or functions[function].timeout_ms,
            f"the timeout of a run of {function!r}",
        )
        run = Run(
            id=self._ids.new(now),
            function=function,
            status=RunStatus.PENDING,
            input=payload,
            idempotency_key=key,
            created_at_ms=now,
            updated_at_ms=now,
            deadline_ms=now + timeout if timeout else 0,
            trace_context=message.trace_context if span is None else tracing.inject(),
        )
        if span is not None:
            span.set_attributes({"trine.run_id": run.id, "trine.function": function})
        record = RunStarted(run=run, request_digest=digest)
        batch = self._machine.append(LogRecord(run_started=record))
        state = self._cache.active[run.id]
        if key:
            self._recent_keys[key] = (run.id, digest)
            batch.after_commit(functools.partial(self._forget_key, key))
        await batch.durable()
        return StartRunResponse(run=self._view(state), created=True)

    def _forget_key(self, key: str) -> None:
        """The key's record is durable: RocksDB answers for it from now on."""
        self._recent_keys.pop(key, None)

    def _idempotent(self, key: str) -> tuple[RunState, bytes] | None:
        """The run ``key`` started and the digest of its request (empty in a row older than
        digests); None for a key never used."""
        found = self._recent_keys.get(key)
        if found is None:
            raw = self._store.get(IDEM, key.encode())
            if raw is None:
                return None
            found = split_idem_row(raw)
        run_id, digest = found
        state = self._cache.lookup(run_id)
        return None if state is None else (state, digest)

    async def get_run(self, message: GetRunRequest) -> Run:
        self._plog.ensure_readable()
        state = await self._durable_view(self._cache.require(message.run_id))
        return self._view(state)

    async def wait_run(self, message: WaitRunRequest) -> Run:
        self._plog.ensure_readable()
        state = await self._durable_view(self._cache.require(message.run_id))
        if not state.final_durable and message.wait_ms > 0:
            woken: asyncio.Future[None] | None = None
            try:
                async with asyncio.timeout(min(message.wait_ms, MAX_WAIT_RUN_MS) / 1000):
                    while not state.final_durable and not self._plog.closed:
                        woken = state.until_woken()
                        await woken
            except TimeoutError:
                pass
            finally:
                if woken is not None:
                    state.watchers.discard(woken)
        return self._view(state)

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        self._plog.ensure_readable()
        limit = min(message.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        status, function = message.status, message.function
        page: list[Run] = []
        for run in self._runs_listed(message):
            if status != RunStatus.UNSPECIFIED and run.status != status:
                continue
            if function and run.function != function:
                continue
            page.append(run)
            if len(page) > limit:
                break
        more = len(page) > limit
        page = page[:limit]
        return ListRunsResponse(runs=page, next_page_token=page[-1].id if more else "")

    def _runs_listed(self, message: ListRunsRequest) -> Iterator[Run]:
        """Runs past the page token, in id order (which is creation order) or its reverse, within
        the creation-time bounds, as readers see them. The bounds are id ranges, since a ULID
        starts with its creation time. Non-final statuses live in memory; the rest is read from
        RocksDB, overlaid with the active runs."""
        token, newest_first = message.page_token, message.newest_first
        low = ulid.floor(message.created_after_ms)  # ids >= low
        high = ulid.floor(message.created_before_ms) if message.created_before_ms else ""  # < high

        def wanted(run_id: str) -> bool:
            past = not token or (run_id < token if newest_first else run_id > token)
            return past and run_id >= low and (not high or run_id < high)

        status = message.status
        if status != RunStatus.UNSPECIFIED and status not in FINAL_STATUSES:
            for run_id in sorted(self._cache.active, reverse=newest_first):
                state = self._cache.active.get(run_id)
                if wanted(run_id) and state is not None and state.durable_run is not None:
                    yield self._view(state)
            return
        if newest_first:
            upper = min(b for b in (token, high) if b) if token or high else ""
            rows = self._store.scan_back(RUNS, start=upper.encode())
        else:
            rows = self._store.scan(RUNS, start=max(token, low).encode())
        for key, value in rows:
            run_id = key.decode()
            if not wanted(run_id):
                if (run_id < low) if newest_first else (high and run_id >= high):
                    return  # past the far bound: nothing further can match
                continue
            state = self._cache.peek(run_id)
            if state is None:
                yield decode(Run, value)  # not in memory: a final run, its row durable
            elif state.durable_run is not None:  # its row may be written but not synced yet
                yield self._view(state)

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        self._plog.ensure_readable()
        state = await self._durable_view(self._cache.require(message.run_id))
        sent = message.after_seq
        woken: asyncio.Future[None] | None = None
        try:
            while True:
                while sent < state.durable_seq:
                    event = state.events[sent]
                    sent += 1
                    yield event
                    # The last event of a final run; a failed run retried goes on past it.
                    if event.type in FINAL_EVENT_TYPES and sent >= state.durable_seq:
                        return
                if state.final_durable:
                    return  # after_seq was at or past the final event
                if self._plog.closed:
                    raise Unavailable("the engine stopped")
                woken = state.until_woken()
                await woken
        finally:
            if woken is not None:
                state.watchers.discard(woken)

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        self._plog.ensure_writable()
        state = self._cache.require(message.run_id)
        await self._refuse_if_finished(state)
        if state.run.cancel_requested:
            await self._plog.barrier()  # the first request may still be in flight
            return self._view(state)
        now = self._clock.now_ms()
        request = CancelRequested(
            run_id=state.id,
            reason=message.reason,
            at_ms=now,
            deadline_ms=now + self._cancel_grace_ms,
        )
        await self._machine.append(LogRecord(cancel_requested=request)).durable()
        return self._view(state)

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        self._plog.ensure_writable()
        name = message.name
        check_signal_name(name)
        payload = self._machine.json_payload(message.payload, f"the payload of signal {name!r}")
        state = self._cache.require(message.run_id)
        await self._refuse_if_finished(state)
        delivered = any(e.kind == EntryKind.SIGNAL and e.name == name for e in state.pending)
        if not delivered:  # kept until a wait takes it: within the run's caps, or refused
            kept_signals.check(state, name, payload, self.kept_limits)
        received = SignalReceived(
            run_id=state.id, name=name, payload=payload, at_ms=self._clock.now_ms()
        )
        await self._machine.append(LogRecord(signal_received=received)).durable()
        return SignalRunResponse(run=self._view(state), delivered=delivered)

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        self._plog.ensure_readable()
        state = await self._durable_view(self._cache.require(message.run_id))
        return GetJournalResponse(entries=state.journal[: state.durable_journal])

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        self._plog.ensure_readable()
        functions = self._machine.functions
        return ListFunctionsResponse(functions=[functions[name] for name in sorted(functions)])

    async def retry_run(self, message: RetryRunRequest) -> Run:
        """A ``RunRetried`` record cutting the journal at its first error (see
        ``machine.apply_retry``): the run is pending again, its failed step runs again."""
        self._plog.ensure_writable()
        self._cache.require(message.run_id)
        # Answer from durable state: a failure (or a block, or an end) may still be in flight.
        # Looked up again after: a finished run may have left the LRU meanwhile.
        await self._plog.barrier()
        state = self._cache.require(message.run_id)
        status = state.run.status
        if status not in apply_retry.RETRYABLE:
            name = status_name(self._view(state).status)
            raise RunNotRetryable(
                f"run {state.id} is {name}; only a failed or blocked run can be retried",
                run_id=state.id,
                status=name,
            )
        retried = RunRetried(
            run_id=state.id,
            reason=message.reason,
            at_ms=self._clock.now_ms(),
            from_index=apply_retry.retry_from(state.journal),
            automatic=False,
        )
        await self._machine.append(LogRecord(run_retried=retried)).durable()
        return self._view(state)

    async def move_run(self, message: MoveRunRequest) -> Run:
        """A ``RunMoved`` record: the run continues only on ``build_id`` (if pinned)."""
        self._plog.ensure_writable()
        state = self._cache.require(message.run_id)
        await self._refuse_if_finished(state)
        build, function = message.build_id, state.run.function
        if not self._machine.builds.registered(build, function):
            raise UnknownBuild(
                f"no worker registered function {function!r} with build {build!r}",
                run_id=state.id,
                function=function,
                build_id=build,
            )
        if state.run.build_id == build:
            await self._plog.barrier()
            return self._view(state)
        moved = RunMoved(run_id=state.id, build_id=build, at_ms=self._clock.now_ms())
        await self._machine.append(LogRecord(run_moved=moved)).durable()
        return self._view(state)

    async def list_builds(self, message: ListBuildsRequest) -> ListBuildsResponse:
        self._plog.ensure_readable()
        runs = [s.run for s in list(self._cache.active.values()) if not s.final]
        return ListBuildsResponse(builds=self._machine.builds.infos(runs, self._clock.now_ms()))

    def _view(self, state: RunState) -> Run:
        """The run as readers see it (``RunState.view``), with the build a pending pinned run
        waits for while no worker of it asks for work, and the signals it keeps (both derived,
        never stored)."""
        run = state.view()
        machine = self._machine
        waiting = machine.builds.waiting_for(machine.functions, run, self._clock.now_ms())
        kept = kept_signals.summary(state) if state.signals else []
        if waiting or kept:
            return dataclasses.replace(run, waiting_for_build=waiting, kept_signals=kept)
        return run

    async def _durable_view(self, state: RunState) -> RunState:
        """Wait until the run's creation is durable (rarely needed: only right after it)."""
        if state.durable_run is None:
            await self._plog.barrier()
        return state

    async def _refuse_if_finished(self, state: RunState) -> None:
        """Raise RunFinished for a run in a final state (once that state is durable)."""
        if state.final:
            await self._plog.barrier()
            status = status_name(state.run.status)
            raise RunFinished(f"run {state.id} already {status}", run_id=state.id, status=status)
