"""The engine: ``Backend`` for the gateway and ``Dispatcher`` for the coordinator, on one log.

Every change follows one path: check against the in-memory state, append one record, apply it
(in memory at once, so the next command sees it; derived writes into the same batch), await the
batch's durability, answer. Nothing awaits between the check and the apply, so two commands never
both pass a check that only one of them may pass.

Leases, the ready queues and the timers are in memory only (docs/internals.md, "Runs"): a dispatch
costs no fsync, and after a restart every non-final run is pending again.

Reads answer from durable state only (``RunState.durable_run``, the durable part of the journal and
events); a read of a run whose creation is still in flight waits for the log's barrier.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import betterproto2
import structlog

from trine_core import (
    InvalidArgument,
    LeaseLost,
    RunFinished,
    RunNotFound,
    Unavailable,
    UnknownFunction,
    check_signal_name,
    get_logger,
)
from trine_engine.clock import Clock, SystemClock
from trine_engine.config import EngineConfig
from trine_engine.deadlines import Deadlines
from trine_engine.event_data import FINAL_TYPES
from trine_engine.partition_log import AppendBatch, PartitionLog
from trine_engine.ready_queue import ReadyQueues
from trine_engine.run_state import LeaseInfo, RunCache, RunState
from trine_engine.state_machine import Applied, CommandsPlan, StateMachine
from trine_engine.storage import IDEM, RUNS, Store
from trine_engine.ulid import UlidGenerator
from trine_proto.codec import decode
from trine_proto.trine.engine.v1 import (
    CancelRequested,
    FunctionsRegistered,
    LogRecord,
    RunCancelled,
    RunCommands,
    RunStarted,
    RunTimedOut,
    SignalReceived,
    TimerFired,
)
from trine_proto.trine.v1 import (
    CancelRunRequest,
    Command,
    EntryKind,
    Event,
    FunctionSpec,
    GetJournalRequest,
    GetJournalResponse,
    GetRunRequest,
    ListFunctionsRequest,
    ListFunctionsResponse,
    ListRunsRequest,
    ListRunsResponse,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    Run,
    RunStatus,
    SignalRunRequest,
    SignalRunResponse,
    StartRunRequest,
    StartRunResponse,
    SubscribeRequest,
    TakeWorkRequest,
    TakeWorkResponse,
    WaitRunRequest,
    WorkItem,
)

if TYPE_CHECKING:
    from trine_core import Backend, Dispatcher

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
_NON_FINAL_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})
_FINAL_COMMANDS = ("run_completed", "run_failed")


class Engine:
    """Implements :class:`trine_core.Backend` and :class:`trine_core.Dispatcher`. Build it with
    :meth:`open`; :meth:`close` releases the database (a reopen in the same process works)."""

    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        clock: Clock,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        self.config = config
        self._log = log or get_logger("engine")
        self._store = store
        self._clock = clock
        self._plog = PartitionLog(store, 0, self._log)
        self._cache = RunCache(store, config.finished_cache_size)
        self._machine = StateMachine(self._cache, config.max_payload_bytes, self)
        self._machine.load(store)
        self._queues = ReadyQueues()
        self._deadlines = Deadlines(clock, self._log)
        self._leases: dict[str, LeaseInfo] = {}
        self._recent_keys: dict[str, str] = {}
        """Idempotency keys accepted but maybe not durable yet (RocksDB has the others)."""
        self._ids = UlidGenerator()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    async def open(
        cls,
        config: EngineConfig,
        log: structlog.stdlib.BoundLogger | None = None,
        clock: Clock | None = None,
    ) -> Engine:
        """Open (or create) the database at ``config.data_dir`` and start the timers. Raises
        StorageError, with one line naming the problem, when the data dir cannot be used."""
        store = Store.open(config.data_dir)
        try:
            engine = cls(config, store, clock or SystemClock(), log)
            engine._recover()
        except BaseException:
            store.close()
            raise
        engine._tasks.append(
            asyncio.create_task(engine._deadlines.run(), name="trine-engine-deadlines")
        )
        engine._log.info(
            "engine opened",
            data_dir=str(config.data_dir),
            active_runs=len(engine._cache.active),
            functions=len(engine._machine.functions),
            next_offset=engine._plog.next_offset,
        )
        return engine

    def _recover(self) -> None:
        """Every non-final run is pending again: queue it, or wait out its retry backoff."""
        now = self._clock.now_ms()
        for state in self._cache.load_active():
            for entry in state.pending:
                if entry.until_ms:
                    self.timer(state, entry.index, entry.until_ms)
            run = state.run
            for deadline in (run.deadline_ms, run.cancel_deadline_ms):
                if deadline:
                    self.deadline(state, deadline)
            self._make_dispatchable(state, now)

    async def close(self) -> None:
        """Write what is gathered, wake every waiter, stop the timers, log the stats, close."""
        if self._closed:
            return
        self._closed = True
        try:
            self._plog.close()
        finally:
            self._queues.wake_all()
            for state in list(self._cache.active.values()):
                state.wake()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            self._log.info("engine stats", **self.stats())
            self._store.close()

    def stats(self) -> dict[str, Any]:
        """Commit and append latencies (recent window) and totals since open."""
        return {
            **self._plog.stats(),
            "active_runs": len(self._cache.active),
            "leases": len(self._leases),
            "ready": len(self._queues),
        }

    @property
    def failed(self) -> bool:
        return self._plog.failure is not None

    @property
    def partition_log(self) -> PartitionLog:
        return self._plog

    def read_log(self, from_offset: int = 0) -> Iterator[tuple[int, LogRecord]]:
        """Partition 0's records from ``from_offset`` on, each CRC-checked: a corrupt record
        raises StorageError naming its partition and offset."""
        return self._plog.read_log(from_offset)

    def _usable(self) -> None:
        failure = self._plog.failure
        if failure is not None:
            raise failure
        if self._closed:
            raise Unavailable("the engine is stopped")

    def _lookup(self, run_id: str) -> RunState:
        state = self._cache.lookup(run_id) if run_id else None
        if state is None:
            raise RunNotFound(f"no run {run_id!r}", run_id=run_id)
        return state

    def _append(
        self, record: LogRecord, plan: CommandsPlan | None = None
    ) -> tuple[AppendBatch, Applied]:
        """Append ``record`` and apply it into the same batch, with no await in between."""
        offset = self._plog.next_offset
        batch = self._plog.append(record)
        try:
            return batch, self._machine.apply(record, batch, plan)
        except BaseException as exc:
            # Checks ran before the append, so this is a bug; never commit half-applied state.
            self._plog.poison(offset, exc)
            raise

    async def _durable_view(self, state: RunState) -> RunState:
        """Wait until the run's creation is durable (rarely needed: only right after it)."""
        if state.durable_run is None:
            await self._plog.barrier()
        return state

    # =============================================================================================
    # Backend
    # =============================================================================================

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        self._usable()
        function = message.function
        if function not in self._machine.functions:
            known = sorted(self._machine.functions)
            listed = ", ".join(known) if known else "none registered yet"
            raise UnknownFunction(
                f"no worker has registered function {function!r} (known: {listed})",
                function=function,
                known=known,
            )
        payload = message.input or b"null"
        self._machine.check_size(payload, "the run's input")
        key = message.idempotency_key
        if key:
            earlier = self._idempotent(key)
            if earlier is not None:
                await self._durable_view(earlier)
                return StartRunResponse(run=earlier.view(), created=False)
        now = self._clock.now_ms()
        timeout = message.timeout_ms or self._machine.functions[function].timeout_ms
        run = Run(
            id=self._ids.new(now),
            function=function,
            status=RunStatus.PENDING,
            input=payload,
            idempotency_key=key,
            created_at_ms=now,
            updated_at_ms=now,
            deadline_ms=now + timeout if timeout else 0,
        )
        record = LogRecord(run_started=RunStarted(run=run))
        batch, applied = self._append(record)
        state = applied.state
        assert state is not None
        if key:
            self._recent_keys[key] = run.id
            batch.after_commit(functools.partial(self._forget_key, key))
        await batch.durable()
        return StartRunResponse(run=state.view(), created=True)

    def _forget_key(self, key: str) -> None:
        """The key's record is durable: RocksDB answers for it from now on."""
        self._recent_keys.pop(key, None)

    def _idempotent(self, key: str) -> RunState | None:
        run_id = self._recent_keys.get(key)
        if run_id is None:
            raw = self._store.get(IDEM, key.encode())
            if raw is None:
                return None
            run_id = raw.decode()
        return self._cache.lookup(run_id)

    async def get_run(self, message: GetRunRequest) -> Run:
        self._usable()
        state = await self._durable_view(self._lookup(message.run_id))
        return state.view()

    async def wait_run(self, message: WaitRunRequest) -> Run:
        self._usable()
        state = await self._durable_view(self._lookup(message.run_id))
        if not state.final_durable and message.timeout_ms > 0:
            woken = asyncio.Event()
            state.watchers.add(woken)
            try:
                async with asyncio.timeout(message.timeout_ms / 1000):
                    while not state.final_durable and not self._closed:
                        await woken.wait()
                        woken.clear()
            except TimeoutError:
                pass
            finally:
                state.watchers.discard(woken)
        return state.view()

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        self._usable()
        limit = min(message.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        status, function, after = message.status, message.function, message.page_token
        page: list[Run] = []
        for run in self._runs_after(after, status):
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

    def _runs_after(self, after: str, status: RunStatus) -> Iterator[Run]:
        """Runs with ids after ``after`` in id order, as readers see them. Non-final statuses
        live in memory; the rest is read from RocksDB, overlaid with the active runs."""
        if status in _NON_FINAL_STATUSES:
            for run_id in sorted(self._cache.active):
                state = self._cache.active.get(run_id)
                if run_id > after and state is not None and state.durable_run is not None:
                    yield state.view()
            return
        for key, value in self._store.scan(RUNS, start=after.encode()):
            run_id = key.decode()
            if run_id == after:
                continue
            state = self._cache.peek(run_id)
            yield state.view() if state is not None else decode(Run, value)

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        self._usable()
        state = await self._durable_view(self._lookup(message.run_id))
        sent = message.after_seq
        woken = asyncio.Event()
        state.watchers.add(woken)
        try:
            while True:
                while sent < state.durable_seq:
                    event = state.events[sent]
                    sent += 1
                    yield event
                    if event.type in FINAL_TYPES:
                        return
                if state.final_durable:
                    return  # after_seq was at or past the final event
                if self._closed:
                    raise Unavailable("the engine stopped")
                await woken.wait()
                woken.clear()
        finally:
            state.watchers.discard(woken)

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        self._usable()
        state = self._lookup(message.run_id)
        await self._finished_refusal(state)
        if state.run.cancel_requested:
            await self._plog.barrier()  # the first request may still be in flight
            return state.view()
        now = self._clock.now_ms()
        record = LogRecord(
            cancel_requested=CancelRequested(
                run_id=state.id,
                reason=message.reason,
                at_ms=now,
                deadline_ms=now + self.config.cancel_grace_ms,
            )
        )
        batch, _ = self._append(record)
        await batch.durable()
        return state.view()

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        self._usable()
        name = message.name
        check_signal_name(name)
        payload = message.payload or b"null"
        self._machine.check_size(payload, f"signal {name!r}")
        try:
            json.loads(payload)
        except ValueError as exc:
            raise InvalidArgument(f"the payload of signal {name!r} is not JSON: {exc}") from exc
        state = self._lookup(message.run_id)
        await self._finished_refusal(state)
        delivered = any(e.kind == EntryKind.SIGNAL and e.name == name for e in state.pending)
        record = LogRecord(
            signal_received=SignalReceived(
                run_id=state.id, name=name, payload=payload, at_ms=self._clock.now_ms()
            )
        )
        batch, _ = self._append(record)
        await batch.durable()
        return SignalRunResponse(run=state.view(), delivered=delivered)

    async def _finished_refusal(self, state: RunState) -> None:
        """Raise RunFinished for a run in a final state (once that state is durable)."""
        if state.final:
            await self._plog.barrier()
            raise RunFinished(
                f"run {state.id} already {state.run.status.name.lower()}",
                run_id=state.id,
                status=state.run.status.name.lower(),
            )

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        self._usable()
        state = await self._durable_view(self._lookup(message.run_id))
        return GetJournalResponse(entries=state.journal[: state.durable_journal])

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        self._usable()
        functions = self._machine.functions
        return ListFunctionsResponse(functions=[functions[name] for name in sorted(functions)])

    # =============================================================================================
    # Dispatcher
    # =============================================================================================

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        self._usable()
        wanted: dict[str, FunctionSpec] = {}
        for spec in message.functions:
            if not spec.name:
                raise InvalidArgument("a function needs a name")
            wanted[spec.name] = spec
        known = self._machine.functions
        changed = [spec for name, spec in wanted.items() if known.get(name) != spec]
        if not changed:
            await self._plog.barrier()  # an identical registration may still be in flight
            return RegisterFunctionsResponse()
        record = LogRecord(functions_registered=FunctionsRegistered(functions=changed))
        batch, _ = self._append(record)
        await batch.durable()
        self._log.info(
            "functions registered",
            worker_id=message.worker_id,
            functions=[spec.name for spec in changed],
        )
        return RegisterFunctionsResponse()

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        self._usable()
        limit = message.max_items or 1
        ttl = message.lease_ttl_ms or self.config.lease_ttl_ms
        functions = list(message.functions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + message.wait_ms / 1000
        while True:
            if self._closed or self.failed:  # woken by close, or the log failed while waiting
                return TakeWorkResponse()
            # Popping and leasing happen with no await in between: a caller cancelled while it
            # waits below has taken nothing, so no run is lost.
            now = self._clock.now_ms()
            taken = self._queues.pop(functions, limit, functools.partial(self._ready, now=now))
            if taken:
                return TakeWorkResponse(
                    items=[self._lease(state, message.worker_id, ttl, now) for state in taken]
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return TakeWorkResponse()
            await self._queues.wait(functions, remaining)

    def _ready(self, state: RunState, *, now: int) -> bool:
        if not self._dispatchable(state):
            return False
        if state.run.not_before_ms > now:
            # Queued when its backoff ended, popped after the wall clock stepped back: the pop
            # drops it from the queue, so a timer must bring it back.
            self._make_dispatchable(state, now)
            return False
        return True

    def _lease(self, state: RunState, worker_id: str, ttl_ms: int, now: int) -> WorkItem:
        attempt = max(state.dispatches, state.run.attempt) + 1
        state.dispatches = attempt
        lease = LeaseInfo(
            id=secrets.token_urlsafe(16),
            run_id=state.id,
            worker_id=worker_id,
            attempt=attempt,
            expires_at_ms=now + ttl_ms,
        )
        state.lease = lease
        self._leases[lease.id] = lease
        self._deadlines.at(lease.expires_at_ms, functools.partial(self._lease_due, lease.id))
        return WorkItem(
            run=state.view(),
            lease=lease.message(),
            journal=list(state.journal),
            step_attempts=dict(state.step_attempts),
        )

    async def report(self, message: ReportRequest) -> ReportResponse:
        self._usable()
        state = self._lookup(message.run_id)
        lease = state.lease
        if lease is None or lease.id != message.lease_id:
            if (
                state.final
                and message.lease_id
                and message.lease_id == state.finished_lease_id
                and any(
                    betterproto2.which_one_of(c, "command")[0] in _FINAL_COMMANDS
                    for c in message.commands
                )
            ):
                await self._plog.barrier()  # answer only once that first report is durable
                return ReportResponse(outcome=ReportOutcome.FINISHED)
            raise LeaseLost(
                f"lease {message.lease_id!r} is not the current lease of run {state.id}",
                run_id=state.id,
                lease_id=message.lease_id,
            )
        now = self._clock.now_ms()
        if lease.expires_at_ms <= now:
            self._release(lease, "expired")
            raise LeaseLost(
                f"lease {lease.id!r} of run {state.id} expired",
                run_id=state.id,
                lease_id=lease.id,
            )
        body = RunCommands(
            run_id=state.id,
            attempt=lease.attempt,
            commands=[self._with_child_id(c, now) for c in message.commands],
            at_ms=now,
        )
        plan = self._machine.plan_commands(state, body)  # refuses a bad report, changing nothing
        batch, _ = self._append(LogRecord(run_commands=body), plan)
        if plan.outcome == ReportOutcome.FINISHED:
            state.finished_lease_id = lease.id
            self._end_lease(state, by_record=True)
        elif plan.outcome == ReportOutcome.SUSPENDED:
            self._end_lease(state, by_record=True)
        elif plan.outcome == ReportOutcome.RETRY_SCHEDULED:
            self._end_lease(state, by_record=True)
            batch.after_commit(functools.partial(self._make_dispatchable, state))
        await batch.durable()
        return ReportResponse(
            outcome=plan.outcome,
            retry_at_ms=plan.retry_at_ms,
            resolved=plan.resolved,
            cancel_requested=state.run.cancel_requested,
        )

    def _with_child_id(self, command: Command, now: int) -> Command:
        """A ``StartChild`` gets its child's run id here, so the log record names the child (an
        id a worker sent is replaced: it could name an existing run)."""
        start = command.start_child
        if start is None:
            return command
        return Command(start_child=dataclasses.replace(start, run_id=self._ids.new(now)))

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        self._usable()
        ttl = message.lease_ttl_ms or self.config.lease_ttl_ms
        now = self._clock.now_ms()
        lost: list[str] = []
        cancelling: list[str] = []
        for lease_id in message.lease_ids:
            lease = self._leases.get(lease_id)
            if lease is None or lease.expires_at_ms <= now:
                if lease is not None:
                    self._release(lease, "expired")
                lost.append(lease_id)
                continue
            lease.expires_at_ms = now + ttl
            self._deadlines.at(lease.expires_at_ms, functools.partial(self._lease_due, lease_id))
            state = self._cache.active.get(lease.run_id)
            if state is not None and state.run.cancel_requested:
                cancelling.append(lease_id)
        return RenewLeasesResponse(lost=lost, cancel_requested=cancelling)

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        self._usable()
        for lease_id in message.lease_ids:
            lease = self._leases.get(lease_id)
            if lease is not None:
                self._release(lease, message.reason or "released")
        return ReleaseLeasesResponse()

    # -- leases and readiness ----------------------------------------------------------------------

    def _lease_due(self, lease_id: str) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None and lease.expires_at_ms <= self._clock.now_ms():
            self._release(lease, "expired")

    def _release(self, lease: LeaseInfo, reason: str) -> None:
        """The run's lease ends without a record: the run is pending again, first in line."""
        self._leases.pop(lease.id, None)
        state = self._cache.active.get(lease.run_id)
        if state is None or state.lease is not lease:
            return
        state.lease = None
        # An expiry means a worker went quiet without the coordinator noticing: worth seeing.
        emit = self._log.info if reason == "expired" else self._log.debug
        emit("lease ended", run_id=state.id, worker_id=lease.worker_id, reason=reason)
        state.wake()
        self._make_dispatchable(state, front=True)

    def _end_lease(self, state: RunState, by_record: bool) -> None:
        """A record ended the run's lease (finished, retry, cancelled): fence it off now; readers
        see the run running until that record is durable."""
        lease = state.lease
        if lease is None:
            return
        self._leases.pop(lease.id, None)
        state.lease = None
        if by_record:
            state.ending_lease = lease

    def _make_dispatchable(
        self, state: RunState, now: int | None = None, front: bool = False
    ) -> None:
        """Queue a pending, unleased run, or set a timer for the end of its retry backoff."""
        if not self._dispatchable(state):
            return
        now = self._clock.now_ms() if now is None else now
        if state.run.not_before_ms > now:
            self._deadlines.at(
                state.run.not_before_ms, functools.partial(self._make_dispatchable, state)
            )
            return
        self._queues.push(state, front=front)

    @staticmethod
    def _dispatchable(state: RunState) -> bool:
        return (
            state.run.status == RunStatus.PENDING
            and state.lease is None
            and state.durable_run is not None
        )

    # -- the state machine's Scheduler -------------------------------------------------------------

    def ready(self, state: RunState) -> None:
        self._make_dispatchable(state)

    def timer(self, state: RunState, index: int, at_ms: int) -> None:
        self._deadlines.at(at_ms, functools.partial(self._wait_due, state, index))

    def deadline(self, state: RunState, at_ms: int) -> None:
        self._deadlines.at(at_ms, functools.partial(self._deadline_due, state))

    def stopped(self, state: RunState) -> None:
        self._end_lease(state, by_record=True)

    def _wait_due(self, state: RunState, index: int) -> None:
        """A sleep's due time or a signal wait's timeout: resolve the wait if it still waits."""
        if self._closed or self.failed or state.final or index >= len(state.journal):
            return
        entry = state.journal[index]
        if not entry.pending:
            return
        now = self._clock.now_ms()
        if entry.until_ms > now:  # the wall clock stepped back
            self.timer(state, index, entry.until_ms)
            return
        self._append(LogRecord(timer_fired=TimerFired(run_id=state.id, index=index, at_ms=now)))

    def _deadline_due(self, state: RunState) -> None:
        """Force a cancellation whose grace ran out, or fail a run past its deadline."""
        if self._closed or self.failed or state.final:
            return
        run, now = state.run, self._clock.now_ms()
        if run.cancel_requested and run.cancel_deadline_ms <= now:
            reason = "the run did not finish within the cancellation's grace period"
            record = LogRecord(
                run_cancelled=RunCancelled(run_id=state.id, reason=reason, at_ms=now)
            )
        elif run.deadline_ms and run.deadline_ms <= now:
            record = LogRecord(run_timed_out=RunTimedOut(run_id=state.id, at_ms=now))
        else:
            due = [d for d in (run.deadline_ms, run.cancel_deadline_ms) if d > now]
            if due:  # the wall clock stepped back
                self.deadline(state, min(due))
            return
        self._append(record)


if TYPE_CHECKING:  # mypy checks here that Engine satisfies both protocols

    def _conforms(engine: Engine) -> tuple[Backend, Dispatcher]:
        return engine, engine
