"""The engine's ``Dispatcher``: what the coordinator asks of it (register functions, take work,
report a worker's commands under a lease, renew and release leases).

Builds (docs/versioning.md): a registration records its build on the functions it sets, and
resumes the runs a workflow error blocked on another build; a ``take_work`` notes its taker's
build as connected and is given no run pinned to another build. It writes nothing: a run's build
is the build of the first worker that *reports* for it (the ``RunCommands`` record names the
reporter's build, ``apply_report`` sets it), so dispatching costs no synced write, and a run taken
and given back before any report has no build yet: any build may take it.

A batch of reports (``report_batch``) is each report's synchronous half, in order, then each
answer: one call and one synced commit for all of them.

A report, top to bottom: the lease is checked; the commands are planned (a bad report is refused
here, having changed nothing); the record is appended and the plan applied, with no ``await`` in
between; the lease ends if the attempt did; the answer waits until the record is durable.

Whoever the caller is (in a split deployment anything that reaches the engine's port may be),
the durations and counts it chooses are clamped here, not refused (issue 13: a lease TTL of
2^32-1 ms held a run hostage): a lease lasts at most ``[engine] max_lease_ttl_ms``, a
``take_work`` waits at most ``MAX_TAKE_WAIT_MS`` and leases at most ``MAX_TAKE_ITEMS`` runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator

import betterproto2
import structlog

from trine_core import (
    Dispatcher,
    InvalidArgument,
    LeaseLost,
    TrineError,
    WorkCredit,
    check_duration,
    refused,
)
from trine_engine import metrics
from trine_engine.clock import Clock
from trine_engine.leases import Lease, LeaseTable
from trine_engine.machine import Plan, StateMachine, apply_retry
from trine_engine.run_state import RunCache, RunState
from trine_engine.scheduler import Scheduler
from trine_engine.storage import AppendBatch, PartitionLog
from trine_engine.ulid import UlidGenerator
from trine_proto.trine.engine.v1 import (
    FunctionsRegistered,
    LogRecord,
    RunCommands,
    RunRetried,
)
from trine_proto.trine.v1 import (
    Command,
    FunctionSpec,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportBatchRequest,
    ReportBatchResponse,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    ReportResult,
    RunStatus,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkItem,
)
from trine_proto.vocabulary import name_problem

_FINAL_COMMANDS = ("run_completed", "run_failed", "run_blocked")
_ENDS_ATTEMPT = (
    ReportOutcome.FINISHED,
    ReportOutcome.SUSPENDED,
    ReportOutcome.RETRY_SCHEDULED,
)
MAX_TAKE_WAIT_MS = 60_000
"""The longest a ``take_work`` long-polls (the coordinator asks for a second at a time)."""
STREAM_WAIT_S = 1.0
"""The longest a ``take_work_stream`` waits for work before it looks at the log's state again."""
MAX_TAKE_ITEMS = 1_000
"""The most runs one ``take_work`` leases (the coordinator asks for a worker's free slots; a
worker with more slots than this fills them over several calls)."""


class EngineDispatcher(Dispatcher):
    def __init__(
        self,
        plog: PartitionLog,
        cache: RunCache,
        machine: StateMachine,
        scheduler: Scheduler,
        leases: LeaseTable,
        clock: Clock,
        ids: UlidGenerator,
        lease_ttl_ms: int,
        log: structlog.stdlib.BoundLogger,
        max_lease_ttl_ms: int = 600_000,
    ) -> None:
        self._plog = plog
        self._cache = cache
        self._machine = machine
        self._scheduler = scheduler
        self._leases = leases
        self._clock = clock
        self._ids = ids
        self._max_lease_ttl_ms = max(1, max_lease_ttl_ms)
        self._lease_ttl_ms = min(lease_ttl_ms, self._max_lease_ttl_ms)
        self._log = log
        self._ttl_clamp_logged = False

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        """Record the settings that changed (a registration by another build changes
        ``FunctionSpec.build_id``, so each build's first registration of a function is
        recorded), then resume the blocked runs of these functions that another build's code
        blocked."""
        self._plog.ensure_writable()
        build = message.build_id
        wanted: dict[str, FunctionSpec] = {}
        for spec in message.functions:
            if not spec.name:
                raise InvalidArgument("a function needs a name")
            if (problem := name_problem(spec.name, "a function's name")) is not None:
                raise InvalidArgument(problem)
            check_duration(spec.timeout_ms, f"the timeout of function {spec.name!r}")
            wanted[spec.name] = dataclasses.replace(spec, build_id=build or spec.build_id)
        self._machine.builds.registering(build, self._clock.now_ms())
        known = self._machine.functions
        changed = [spec for name, spec in wanted.items() if known.get(name) != spec]
        batch = None
        if changed:
            record = LogRecord(functions_registered=FunctionsRegistered(functions=changed))
            batch = self._machine.append(record)
            self._log.info(
                "functions registered",
                worker_id=message.worker_id,
                build_id=build,
                functions=[spec.name for spec in changed],
            )
        if build:
            batch = self._resume_blocked(wanted, build) or batch
        if batch is None:
            await self._plog.barrier()  # an identical registration may still be in flight
        else:
            await batch.durable()
        return RegisterFunctionsResponse()

    def _resume_blocked(self, functions: dict[str, FunctionSpec], build: str) -> AppendBatch | None:
        """Retry (automatically) every blocked run of ``functions`` that a build other than
        ``build`` blocked: the new code may not raise. Reads the cache's index of blocked runs,
        so a registration costs nothing for functions without any."""
        batch = None
        now = self._clock.now_ms()
        reason = f"build {build} registered"
        for function in functions:
            held = self._cache.blocked.get(function)
            for state in list(held.values()) if held else ():
                if state.run.status != RunStatus.BLOCKED or state.run.blocked_build_id == build:
                    continue
                retried = RunRetried(
                    run_id=state.id,
                    reason=reason,
                    at_ms=now,
                    from_index=apply_retry.retry_from(state.journal),
                    automatic=True,
                )
                batch = self._machine.append(LogRecord(run_retried=retried))
                self._log.info(
                    "blocked run resumed",
                    run_id=state.id,
                    function=function,
                    build_id=build,
                    blocked_build_id=state.run.blocked_build_id,
                )
        return batch

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        self._plog.ensure_writable()
        limit = min(message.max_items or 1, MAX_TAKE_ITEMS)
        ttl = self._ttl(message.lease_ttl_ms)
        functions = list(message.functions)
        build = message.build_id
        builds = self._machine.builds
        builds.taking(build, self._clock.now_ms())
        try:
            return await self._take(message, functions, build, limit, ttl)
        finally:
            builds.took(build, self._clock.now_ms())

    async def _take(
        self, message: TakeWorkRequest, functions: list[str], build: str, limit: int, ttl: int
    ) -> TakeWorkResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(message.wait_ms, MAX_TAKE_WAIT_MS) / 1000
        while True:
            # Woken by close, or the log failed while waiting: lease nothing.
            if self._plog.closed or self._plog.failure is not None:
                return TakeWorkResponse()
            # Popping, leasing and answering happen with no await in between: a caller
            # cancelled while it waits below has taken nothing, so no run is lost.
            now = self._clock.now_ms()
            taken = self._scheduler.take(functions, limit, now, build)
            if taken:
                items = [self._work_item(s, message.worker_id, build, ttl, now) for s in taken]
                return TakeWorkResponse(items=items)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return TakeWorkResponse()
            await self._scheduler.wait(functions, remaining, build)

    async def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        """Runs pushed to one session as they become ready, within the credit its requests
        granted. A task reads the requests (credit may come while this waits for work); taking,
        leasing and yielding have no await in between, as in ``take_work``. While the stream
        is open its build counts as connected (one ``take_work`` waiting)."""
        self._plog.ensure_writable()
        first = await anext(requests, None)
        if first is None:
            return
        credit = WorkCredit(first.max_items)
        reader = asyncio.create_task(credit.read(requests))
        functions, build = list(first.functions), first.build_id
        ttl = self._ttl(first.lease_ttl_ms)
        builds = self._machine.builds
        builds.taking(build, self._clock.now_ms())
        ticket: int | None = None  # a stream woken for a run another took keeps its turn
        try:
            while not (self._plog.closed or self._plog.failure is not None):
                if credit.ended:  # nobody reads what would be leased now: lease nothing
                    return
                if credit.left <= 0:
                    await credit.more(STREAM_WAIT_S)
                    continue
                now = self._clock.now_ms()
                taken = self._scheduler.take(
                    functions, min(credit.left, MAX_TAKE_ITEMS), now, build
                )
                if taken:
                    ticket = None
                    credit.left -= len(taken)
                    items = [self._work_item(s, first.worker_id, build, ttl, now) for s in taken]
                    yield TakeWorkResponse(items=items)
                else:
                    # Woken by a run made ready, or after a second to look at the log's state
                    # and the requests' end again. Woken for nothing (another stream took the
                    # run), it waits again with its ticket, ahead of the stream that took the
                    # run: the streams take runs in turn.
                    ticket = await self._scheduler.wait(functions, STREAM_WAIT_S, build, ticket)
        finally:
            reader.cancel()
            builds.took(build, self._clock.now_ms())

    def _work_item(
        self, state: RunState, worker_id: str, build: str, ttl_ms: int, now: int
    ) -> WorkItem:
        lease = self._leases.grant(state, worker_id, ttl_ms, now, build)
        metrics.DISPATCH_LATENCY.labels(state.run.function).observe(
            time.perf_counter() - state.ready_at
        )
        return WorkItem(
            run=state.view(),
            lease=lease.message(),
            journal=list(state.journal),
            step_attempts=dict(state.step_attempts),
        )

    async def report(self, message: ReportRequest) -> ReportResponse:
        self._plog.ensure_writable()
        return await self._answer(self._accept(message))

    async def report_batch(self, message: ReportBatchRequest) -> ReportBatchResponse:
        """Every report accepted (checked, planned, appended, applied) in order with no await in
        between, so they all land in the log batch being gathered and share its one synced
        commit; then each is answered once that commit is durable. A report refused (lease lost,
        a bad command, the log failed) gets its error as its result and changes nothing; the
        others go on."""
        accepted: list[_Accepted | TrineError] = []
        for report in message.reports:
            try:
                self._plog.ensure_writable()
                accepted.append(self._accept(report))
            except TrineError as exc:
                accepted.append(exc)
            except Exception as exc:  # a bug in one report must not fail its neighbours
                self._log.exception("report failed", run_id=report.run_id)
                accepted.append(TrineError(f"{type(exc).__name__}: {exc}"))
        results: list[ReportResult] = []
        for each in accepted:
            if isinstance(each, TrineError):
                results.append(refused(each))
                continue
            try:
                results.append(ReportResult(response=await self._answer(each)))
            except TrineError as exc:  # the commit failed: nothing of it is durable
                results.append(refused(exc))
        return ReportBatchResponse(results=results)

    def _accept(self, message: ReportRequest) -> _Accepted:
        """The synchronous half of a report: check the lease, plan the commands (refusing a bad
        report unchanged), append the record and apply the plan, end the lease if the attempt
        ended. Raises LeaseLost (and a plan's refusal) having changed nothing."""
        state = self._cache.require(message.run_id)
        now = self._clock.now_ms()
        try:
            lease = self._leases.check(state, message.lease_id, now)
        except LeaseLost:
            if not _repeats_final_report(state, message):
                raise
            return _Accepted(state, None, None)
        body = RunCommands(
            run_id=state.id,
            attempt=lease.attempt,
            commands=[self._with_child_id(c, now) for c in message.commands],
            at_ms=now,
            build_id=lease.build_id,  # the run's build if it has none yet (its first report)
        )
        plan = self._machine.plan(state, body, lease.build_id)  # refuses a bad report, unchanged
        batch = self._machine.append_report(state, body, plan)
        self._end_attempt(state, lease, plan, batch)
        return _Accepted(state, plan, batch)

    async def _answer(self, accepted: _Accepted) -> ReportResponse:
        """The answer to an accepted report, once its record is durable (a repeated final report:
        once the report that finished the run is)."""
        plan, batch = accepted.plan, accepted.batch
        if plan is None or batch is None:
            await self._plog.barrier()  # answer only once that first report is durable
            return ReportResponse(outcome=ReportOutcome.FINISHED)
        await batch.durable()
        return ReportResponse(
            outcome=plan.outcome,
            retry_at_ms=plan.retry_at_ms,
            resolved=plan.resolved,
            cancel_requested=accepted.state.run.cancel_requested,
        )

    def _with_child_id(self, command: Command, now: int) -> Command:
        """A ``StartChild`` gets its child's run id here, so the log record names the child (an
        id a worker sent is replaced: it could name an existing run)."""
        start = command.start_child
        if start is None:
            return command
        return Command(start_child=dataclasses.replace(start, run_id=self._ids.new(now)))

    def _end_attempt(self, state: RunState, lease: Lease, plan: Plan, batch: AppendBatch) -> None:
        """A report that finished the run, suspended it or scheduled a retry ends its lease."""
        outcome = plan.outcome
        if outcome not in _ENDS_ATTEMPT:
            return
        self._leases.fence(state)
        if outcome == ReportOutcome.FINISHED:
            state.finished_lease_id = lease.id
        elif outcome == ReportOutcome.RETRY_SCHEDULED:
            batch.after_commit(functools.partial(self._scheduler.make_dispatchable, state))

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        self._plog.ensure_writable()
        ttl = self._ttl(message.lease_ttl_ms)
        now = self._clock.now_ms()
        lost: list[str] = []
        cancelling: list[str] = []
        for lease_id in message.lease_ids:
            lease = self._leases.renew(lease_id, ttl, now)
            if lease is None:
                lost.append(lease_id)
                continue
            state = self._cache.active.get(lease.run_id)
            if state is not None and state.run.cancel_requested:
                cancelling.append(lease_id)
        return RenewLeasesResponse(lost=lost, cancel_requested=cancelling)

    def _ttl(self, asked_ms: int) -> int:
        """The lease TTL a caller gets for asking ``asked_ms`` (0: the default), at most
        ``max_lease_ttl_ms``; the first clamp is logged, as it is most likely a coordinator whose
        ``lease_ttl_ms`` exceeds it (a caller asking for more each time is logged once)."""
        if not asked_ms:
            return self._lease_ttl_ms
        if asked_ms <= self._max_lease_ttl_ms:
            return asked_ms
        if not self._ttl_clamp_logged:
            self._ttl_clamp_logged = True
            self._log.warning(
                "a lease TTL over [engine] max_lease_ttl_ms was asked for; leases get the maximum",
                asked_ms=asked_ms,
                max_lease_ttl_ms=self._max_lease_ttl_ms,
            )
        return self._max_lease_ttl_ms

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        self._plog.ensure_writable()
        for lease_id in message.lease_ids:
            self._leases.release_id(lease_id, message.reason or "released")
        return ReleaseLeasesResponse()


@dataclasses.dataclass(slots=True)
class _Accepted:
    """A report checked and appended, waiting for its commit to answer; ``plan`` None: a final
    report repeated under the lease that finished the run (answered FINISHED, nothing written)."""

    state: RunState
    plan: Plan | None
    batch: AppendBatch | None


def _repeats_final_report(state: RunState, message: ReportRequest) -> bool:
    """A final report (or the one that blocked the run) repeated under the lease that ended the
    run (a retry of a report whose answer was lost): answered FINISHED again, changing
    nothing."""
    return (
        (state.final or state.run.status == RunStatus.BLOCKED)
        and bool(message.lease_id)
        and message.lease_id == state.finished_lease_id
        and any(
            betterproto2.which_one_of(c, "command")[0] in _FINAL_COMMANDS for c in message.commands
        )
    )
