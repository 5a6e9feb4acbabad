"""The coordinator's worker hub: register, dispatch within capacity, forward reports, watch
heartbeats.

One stream per worker process, carried by the worker transport of ``worker_addr``'s scheme
(``grpc://``: ``WorkerService.Connect``), which hands it to :meth:`WorkerService.serve` as a
:class:`~trine_core.WorkerStream`; the protocol is in docs/internals.md ("The worker stream"). The
coordinator keeps no durable state: what it knows of a worker lives as long as the worker's
stream, and every lease a stream held is given back to the engine when the stream ends, so its
runs are dispatched again at once.

A run is dispatched again only when its worker is gone, never because it is slow (issue 10):

- leases are renewed for every run in flight of every connected worker, heartbeats or not, so a
  step may take any number of lease TTLs;
- a worker is dropped after five heartbeat intervals of silence counted while the coordinator
  listens: a coordinator that stalls (a long pause, a stopped process, an overloaded host) does
  not hold the heartbeats it has not read yet against its workers when it runs again;
- a run whose worker is lost is dispatched again at once, with a warning naming the worker, the
  run and why; its old attempt is fenced (the engine refuses reports under its lease). A run
  whose worker is lost ``max_worker_losses`` times in a row without progress fails with
  ``WorkerLost`` instead of being dispatched again forever (``losses``).

Who may hold a session (a worker token, the functions it may serve, one live session per
``worker_id``) is ``admission``'s: a refused stream ends before anything is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from trine_coordinator import admission, metrics
from trine_coordinator.admission import Credential
from trine_coordinator.credit import Credit
from trine_coordinator.losses import Loss, Losses
from trine_coordinator.relay import ReportRelay
from trine_coordinator.session import WorkerSession
from trine_coordinator.settings import HEARTBEAT_INTERVAL_MS, LEASE_TTL_MS, MAX_WORKER_LOSSES
from trine_core import (
    Dispatcher,
    InvalidArgument,
    Settings,
    TrineError,
    Unavailable,
    WorkerStream,
    tracing,
)
from trine_core.auth import TokenBook
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    Register,
    Registered,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportAck,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    ReportResult,
    Run,
    RunFailed,
    WorkerMessage,
    WorkerReport,
    WorkItem,
)
from trine_proto.vocabulary import TRANSIENT_CODES, ErrorCode, name_problem, now_ms

MISSED_HEARTBEATS = 5
REGISTER_TIMEOUT_S = 10.0
SLOT_ENDING = (
    ReportOutcome.FINISHED,
    ReportOutcome.RETRY_SCHEDULED,
    ReportOutcome.SUSPENDED,
)
# Lease renewal also tells us which runs are being cancelled, so it runs at least this often.
MAX_RENEW_INTERVAL_S = 1.0
TAKE_CLOSE_S = 5.0
"""The longest a session's end waits for the engine's side of its take stream to close."""


@dataclass(slots=True)
class _Forwarded:
    """A report on its way to the engine: whose it is, and whether it may end the attempt."""

    session: WorkerSession
    message: WorkerReport
    ending: bool


def _ids(item: WorkItem) -> tuple[str, str]:
    """A work item's run id and lease id: the engine sends every item with both."""
    if item.run is None or item.lease is None:
        raise TrineError("the engine sent a work item without a run or a lease")
    return item.run.id, item.lease.id


class WorkerService:
    """The coordinator's :class:`~trine_core.WorkerHub`: every worker's session."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: Settings,
        log: structlog.stdlib.BoundLogger,
        tokens: TokenBook | None = None,
    ) -> None:
        """``tokens``: the ``[auth] tokens_file`` every worker must present a token of (None:
        workers connect without one)."""
        self.dispatcher = dispatcher
        self.settings = settings
        self.log = log
        self.tokens = tokens
        self.sessions: dict[str, WorkerSession] = {}
        self.losses = Losses(settings[MAX_WORKER_LOSSES])
        self._tasks: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._stopping = False
        self._unwatch: Callable[[], None] = lambda: None
        self._relay: ReportRelay[_Forwarded] = ReportRelay(
            dispatcher, self._answered, self._spawn, log
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch())
        self._unwatch = metrics.watch(self.sessions)

    async def stop(self) -> None:
        # Set first: the worker server still accepts streams until the role closes it after
        # this returns, and a session registered meanwhile would keep the wait below going.
        self._stopping = True
        self._unwatch()
        for session in list(self.sessions.values()):
            self._end(session, "coordinator stopping")
        # The watch, and a renewal in flight: the sessions have ended, and a renewal waiting on
        # an engine that does not answer would hold the stop until the call's deadline (the
        # releases of the ended sessions' leases, awaited below, still may).
        for task in (self._monitor, self._renewal):
            if task is not None:
                task.cancel()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def healthy(self) -> bool:
        """The worker port's health check (gRPC's health service): whether the engine answers;
        an empty lease renewal is the cheapest call it answers."""
        try:
            await self.dispatcher.renew_leases(RenewLeasesRequest())
        except TrineError as exc:
            self.log.warning("engine does not answer", error=exc.message)
            return False
        return True

    def workers(self) -> list[dict[str, object]]:
        return [session.describe() for session in self.sessions.values()]

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the stream ------------------------------------------------------------------------------

    async def serve(self, stream: WorkerStream) -> None:
        """One worker's stream, handed over by the worker transport (``WorkerHub.serve``): admit
        it by its token (a refusal ends it before any message is read), then serve
        :meth:`connect`; the generator is closed as soon as the stream ends, so the session ends
        with it. A refusal is raised as the ``TrineError`` the stream ends with."""
        metadata = stream.metadata
        try:
            credential = admission.authenticate(self.tokens, metadata)
        except TrineError as exc:
            self._refused(exc, "", None, stream.peer or None)
            raise
        instance = metadata.get(admission.INSTANCE, "")
        replies = self.connect(_messages(stream), credential, instance)
        async with contextlib.aclosing(replies):
            async for message in replies:
                await stream.send(message)

    async def connect(
        self,
        messages: AsyncIterator[WorkerMessage],
        credential: Credential | None = None,
        instance: str = "",
    ) -> AsyncGenerator[CoordinatorMessage, None]:
        """One worker's session, from its ``Register`` until the stream ends. ``credential``
        is what :meth:`serve` admitted the stream with; ``instance`` the worker's
        ``trine-worker-instance``."""
        register = await self._first_register(messages)
        try:
            # Before the token's check, whose refusal names the functions, and the log lines,
            # which name the worker: neither may carry a 1 MB name.
            _check_names(register)
            admission.admit_functions(credential, (spec.name for spec in register.functions))
            self._refuse_duplicate(register.worker_id, instance)
        except TrineError as exc:
            named = name_problem(register.worker_id, "") is None
            self._refused(exc, register.worker_id if named else "", credential)
            raise
        session = WorkerSession(
            worker_id=register.worker_id,
            session_id=secrets.token_hex(8),
            functions=[f.name for f in register.functions],
            max_concurrency=register.max_concurrency,
            sdk_version=register.sdk_version,
            build_id=register.build_id,
            credential=credential,
            instance=instance,
            batches=register.batches,
        )
        try:
            await self.dispatcher.register_functions(
                RegisterFunctionsRequest(
                    worker_id=register.worker_id,
                    functions=register.functions,
                    build_id=register.build_id,
                )
            )
        except TrineError as exc:
            if exc.code in TRANSIENT_CODES:  # the engine is away: the worker retries with backoff
                raise Unavailable(exc.message) from None
            # The registration itself is wrong (a function without a name, a timeout beyond
            # any span): the worker's owner must change it, so it is a refusal, not an outage.
            self._refused(exc, session.worker_id, credential)
            raise
        if self._stopping:  # checked after the await above: stop() may have begun during it
            raise Unavailable("the coordinator is stopping")
        try:  # again: another registration of the id may have won while the engine answered
            self._refuse_duplicate(session.worker_id, instance)
        except TrineError as exc:
            self._refused(exc, session.worker_id, credential)
            raise
        log = self.log.bind(worker_id=session.worker_id, session_id=session.session_id)
        previous = self.sessions.get(session.worker_id)
        if previous is not None:  # it yields the id (``_holder``): replaced, once
            why = (
                "the worker reconnected"
                if instance and previous.instance == instance
                else f"silent for {time.monotonic() - previous.last_seen:.1f}s while a new "
                "session registered its worker_id"
            )
            log.warning("worker fenced", fenced_session_id=previous.session_id, why=why)
            self._end(previous, f"fenced: {why}")
        # Silence is counted from here: the engine may have taken its time to register the
        # functions, and the worker heartbeats only once it has our answer.
        session.last_seen = time.monotonic()
        self.sessions[session.worker_id] = session
        try:  # from here on, however the generator ends, the session ends with it
            log.info(
                "worker registered",
                functions=session.functions,
                slots=session.max_concurrency,
                build_id=session.build_id or None,
                token=session.token_name or None,
            )
            yield CoordinatorMessage(
                registered=Registered(
                    session_id=session.session_id,
                    heartbeat_interval_ms=self.settings[HEARTBEAT_INTERVAL_MS],
                    batches=True,
                )
            )
            if not session.closed:  # not fenced or stopped while Registered was being sent
                session.tasks = [
                    self._spawn(self._read(session, messages)),
                    self._spawn(self._dispatch(session)),
                ]
            while (message := await session.next_message()) is not None:
                yield message
            if session.refusal is not None:  # ended because its token no longer admits it
                raise session.refusal
        finally:
            self._end(session, "stream ended")

    def _holder(self, worker_id: str, instance: str) -> WorkerSession | None:
        """The live session that keeps ``worker_id`` from a new registration, or None: the id
        is free, or its session yields it (the same worker reconnecting; silent for
        ``SILENT_INTERVALS`` heartbeat intervals, so most likely gone)."""
        previous = self.sessions.get(worker_id)
        if previous is None or previous.closed:
            return None
        if instance and previous.instance == instance:
            return None
        interval = self.settings[HEARTBEAT_INTERVAL_MS] / 1000
        if time.monotonic() - previous.last_seen > admission.SILENT_INTERVALS * interval:
            return None
        return previous

    def _refuse_duplicate(self, worker_id: str, instance: str) -> None:
        """Refuse (``WorkerIdInUse``) a second live worker with one id: fencing the first instead
        made two such workers take turns a dozen times a second (issue 13)."""
        holder = self._holder(worker_id, instance)
        if holder is not None:
            raise admission.duplicate(worker_id, holder.session_id)

    def _refused(
        self,
        error: TrineError,
        worker_id: str,
        credential: Credential | None,
        peer: str | None = None,
    ) -> None:
        """Count and log a refused stream (one line; the worker backs off, so lines are few)."""
        metrics.WORKERS_REFUSED.labels(metrics.refusal_reason(error.code)).inc()
        self.log.warning(
            "worker refused",
            code=error.code,
            reason=error.message,
            worker_id=worker_id or None,
            token=credential.name if credential is not None else None,
            peer=peer,
        )

    def _close_revoked(self) -> None:
        """Close each session whose token the tokens file, as last (re)loaded, no longer admits
        (checked at every tick, so within a second of a SIGHUP). Its runs are given back and
        dispatched again, not counted as lost."""
        for session in list(self.sessions.values()):
            refusal = admission.recheck(self.tokens, session.credential, session.functions)
            if refusal is None:
                continue
            metrics.WORKERS_REFUSED.labels("revoked").inc()
            self.log.warning(
                "worker session closed: its token no longer admits it",
                worker_id=session.worker_id,
                session_id=session.session_id,
                token=session.token_name,
                reason=refusal.message,
            )
            session.refusal = refusal
            self._end(session, f"its token no longer admits it: {refusal.message}", lost=False)

    def _end(self, session: WorkerSession, reason: str, lost: bool | None = None) -> None:
        """End a session for any reason, once: stop its tasks, forget it, give its leases back.

        Synchronous and independent of the response generator: a worker that went silent
        without closing its connection may leave the generator blocked in ``send_message``
        (flow control) indefinitely, and its leases must not wait for (or be renewed until)
        TCP gives up. ``lost=False``: we closed it on purpose (a revoked token), not a loss.
        """
        if session.closed:
            return
        # Lost: the worker did not ask to go and we are not stopping. Its runs go to the next
        # worker at once, each loss counted against the run (see ``losses``), unless the worker
        # started over because we told it the engine was unavailable (the SDK does that).
        if lost is None:
            lost = not self._stopping and not session.draining and not session.told_unavailable
        if lost:
            metrics.WORKERS_LOST.inc()
            self._count_losses(session, reason)
        session.close(reason)
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        if self.sessions.get(session.worker_id) is session:
            del self.sessions[session.worker_id]
        # Spawned after the cancellations above, so the dispatch loop has stopped (and any
        # long-poll result it still got is in in_flight) before the release reads in_flight.
        self._spawn(self._release(session))
        (self.log.warning if lost else self.log.info)(
            "worker disconnected",
            worker_id=session.worker_id,
            session_id=session.session_id,
            reason=reason,
            in_flight=len(session.in_flight),
            run_ids=sorted(session.in_flight),
        )

    def _count_losses(self, session: WorkerSession, reason: str) -> None:
        """Count a loss against each run ``session`` held, and say so, run by run."""
        for run_id, lease_id in session.in_flight.items():
            step = session.steps.get(run_id, "")
            loss = self.losses.lost(
                run_id, session.journal_lengths.get(run_id, 0), session.worker_id, reason, step
            )
            limit = self.losses.limit
            self.log.warning(
                "run lost its worker; dispatching it again"
                if limit <= 0 or loss.count < limit
                else "run lost its worker; it fails with WorkerLost at its next dispatch",
                worker_id=session.worker_id,
                session_id=session.session_id,
                run_id=run_id,
                function=_function(session, run_id),
                lease_id=lease_id,
                reason=reason,
                step=step or None,
                losses_in_a_row=loss.count,
                max_worker_losses=limit,
            )

    async def _first_register(self, messages: AsyncIterator[WorkerMessage]) -> Register:
        try:
            first = await asyncio.wait_for(anext(messages), REGISTER_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            raise InvalidArgument("no Register message") from None
        register = first.register  # None unless the oneof holds a Register
        if register is None or not register.worker_id:
            raise InvalidArgument("the first message must be Register with a worker_id")
        return register

    async def _read(self, session: WorkerSession, messages: AsyncIterator[WorkerMessage]) -> None:
        try:
            async for message in messages:
                session.last_seen = time.monotonic()
                session.last_heard_ms = now_ms()
                if message.report is not None:
                    self._forward(session, message.report)
                elif message.reports is not None:
                    # In order: the reports of one run reach the dispatcher as they were sent.
                    for report in message.reports.reports:
                        self._forward(session, report)
                elif message.drain is not None:
                    session.drain()
                    self.log.info("worker draining", worker_id=session.worker_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Unavailable (the connection broke), a message over the limit
            self._end(session, f"stream broke: {type(exc).__name__}: {exc}")
        else:
            self._end(session, "the worker closed its stream")

    def _forward(self, session: WorkerSession, message: WorkerReport) -> None:
        """Hand the report to the relay (this turn's ``report_batch``), noting what it says of
        the run's step and whether it may end the attempt."""
        report = message.report
        if report is None:
            session.send(
                CoordinatorMessage(
                    report_ack=ReportAck(
                        request_id=message.request_id,
                        error_code=ErrorCode.INVALID_ARGUMENT,
                        error_message="a WorkerReport needs a report",
                    )
                )
            )
            return
        run_id = report.run_id
        ending = _note_steps(session, report)
        if ending:
            session.reporting[run_id] = session.reporting.get(run_id, 0) + 1
        self._relay.add(_Forwarded(session, message, ending), report)

    def _answered(self, forwarded: _Forwarded, result: ReportResult) -> None:
        """The engine's answer to one forwarded report (``unavailable`` if its batch's call
        failed as a whole): ack the worker, and free the run's slot if the attempt ended."""
        session, message = forwarded.session, forwarded.message
        report = message.report
        assert report is not None
        run_id = report.run_id
        if forwarded.ending and (left := session.reporting.pop(run_id, 1) - 1) > 0:
            session.reporting[run_id] = left
        if code := result.error_code:
            ack = ReportAck(
                request_id=message.request_id, error_code=code, error_message=result.error_message
            )
            if code == ErrorCode.LEASE_LOST:
                session.finish(run_id, report.lease_id)
            elif code in TRANSIENT_CODES:  # the worker starts its stream over: not a loss
                session.told_unavailable = True
        else:
            # Not `or`: a betterproto2 message's truth compares every field with its default.
            response = result.response if result.response is not None else ReportResponse()
            ack = ReportAck(request_id=message.request_id, response=response)
            if response.outcome in SLOT_ENDING:
                session.finish(run_id, report.lease_id)
                if response.outcome == ReportOutcome.FINISHED:
                    self.losses.forget(run_id)
        session.send(CoordinatorMessage(report_ack=ack))

    async def _dispatch(self, session: WorkerSession) -> None:
        """Keep the worker's free slots filled with ready runs of its functions: one
        ``take_work_stream`` at a time, opened again when it ends or breaks while the worker
        is still here (its runs in transit keep their leases until they expire)."""
        backoff = 0.05
        failing = False
        while not session.closed:
            if session.free_slots <= 0:
                session.wakeup.clear()
                await session.wakeup.wait()
                continue
            try:
                if await self._take(session):
                    backoff, failing = 0.05, False
                    continue
            except Exception as exc:
                # The engine is away (Unavailable) or broken (StorageError): keep the session and
                # try again, slower each time. Letting this task die would leave a registered
                # worker that is never dispatched to.
                if not failing and not isinstance(exc, Unavailable):
                    self.log.warning(
                        "take_work failed; retrying", worker_id=session.worker_id, error=repr(exc)
                    )
                failing = True
            if not (session.draining or session.closed):
                await asyncio.sleep(backoff)  # the engine ended the stream: it is stopping
                backoff = min(backoff * 2, 2.0)

    async def _take(self, session: WorkerSession) -> bool:
        """Read one ``take_work_stream`` to its end, sending what it brings to the worker;
        whether it brought anything."""
        credit = Credit(session, self.settings[LEASE_TTL_MS])
        granting = asyncio.create_task(credit.keep_granting())
        stream = self.dispatcher.take_work_stream(credit.requests())
        brought = False
        try:
            async for response in stream:
                brought = True
                items = response.items
                came = len(items)
                waited = credit.waited()
                if items and waited > self.settings[LEASE_TTL_MS] / 2000:
                    # The items took over half a lease TTL to reach us (we stalled, or the
                    # network did, or nothing was ready): their leases may have expired
                    # meanwhile, their runs gone to other attempts.
                    items = await self._still_leased(session, items, waited)
                # Used up here, with no await until the runs are in flight (or given back): a
                # slot freed during an await above must not be granted again for them.
                credit.received(came)
                if session.draining or session.closed:
                    # Sent before the worker drained or left: give them back, so those runs
                    # go to another worker at once.
                    await self._give_back([_ids(item)[1] for item in items], session)
                    continue
                self._hand_out(session, items)
                credit.grant()  # a run not sent (failed as lost, lease gone) frees its slot
        finally:
            granting.cancel()
            await _close(stream)
        return brought

    def _hand_out(self, session: WorkerSession, items: list[WorkItem]) -> None:
        """Send each work item to the worker (a run lost too often is failed instead)."""
        for item in items:
            run_id, lease_id = _ids(item)
            function = item.run.function if item.run is not None else ""
            loss = self.losses.exhausted(run_id, len(item.journal))
            if loss is not None:
                self._spawn(self._fail_lost_run(session, run_id, function, lease_id, loss))
                continue
            older = session.dispatched(
                run_id,
                lease_id,
                len(item.journal),
                function=function,
                attempt=item.lease.attempt if item.lease is not None else 0,
            )
            if older is not None:
                self.log.warning(
                    "run dispatched again to a worker that still runs an older attempt of "
                    "it; that attempt is fenced (its reports are refused)",
                    worker_id=session.worker_id,
                    run_id=run_id,
                    function=function,
                    lease_id=lease_id,
                    fenced_lease_id=older,
                )
            if item.run is not None and tracing.enabled():
                _trace_dispatch(session, item, item.run)
            session.send(CoordinatorMessage(dispatch=item))

    async def _still_leased(
        self, session: WorkerSession, items: list[WorkItem], waited: float
    ) -> list[WorkItem]:
        """The ``items`` whose leases are still current (renewed now); the others are not sent
        to the worker, which would only run an attempt whose every report is refused."""
        leases = [_ids(item)[1] for item in items]
        try:
            answer = await self.dispatcher.renew_leases(
                RenewLeasesRequest(lease_ids=leases, lease_ttl_ms=self.settings[LEASE_TTL_MS])
            )
        except Exception as exc:  # the usual renewal sorts them out
            self.log.warning("cannot renew late work items", error=repr(exc))
            return items
        lost = set(answer.lost)
        for item in items:
            run_id, lease_id = _ids(item)
            if lease_id in lost:
                self.log.warning(
                    "work item not dispatched: its lease expired before it reached us",
                    worker_id=session.worker_id,
                    run_id=run_id,
                    function=item.run.function if item.run is not None else None,
                    lease_id=lease_id,
                    waited_s=round(waited, 2),
                )
        return [item for item in items if _ids(item)[1] not in lost]

    async def _fail_lost_run(
        self, session: WorkerSession, run_id: str, function: str, lease_id: str, loss: Loss
    ) -> None:
        """Fail, under the lease it was just given, a run whose workers kept being lost, instead
        of sending it to a worker again."""
        error = self.losses.failure(run_id, loss)
        self.log.error(
            "run failed: its worker was lost too many times in a row",
            run_id=run_id,
            function=function,
            losses_in_a_row=loss.count,
            last_worker_id=loss.worker_id,
            last_reason=loss.reason,
            step=loss.step or None,
        )
        report = ReportRequest(
            run_id=run_id, lease_id=lease_id, commands=[Command(run_failed=RunFailed(error=error))]
        )
        try:
            await self.dispatcher.report(report)
        except Exception as exc:
            # Not failed yet (the engine is away, or the lease went): the run comes back and
            # this is tried again at its next dispatch. Give the lease back for that.
            self.log.warning(
                "cannot fail the run; it is dispatched again",
                run_id=run_id,
                function=function,
                error=repr(exc),
            )
            await self._give_back([lease_id], session, "could not fail the run (WorkerLost)")
        else:
            self.losses.forget(run_id)

    async def _release(self, session: WorkerSession) -> None:
        leases, session.in_flight = list(session.in_flight.values()), {}
        await self._give_back(leases, session)

    async def _give_back(self, leases: list[str], session: WorkerSession, reason: str = "") -> None:
        if not leases:
            return
        reason = reason or session.close_reason or "worker draining"
        try:
            await self.dispatcher.release_leases(
                ReleaseLeasesRequest(lease_ids=leases, reason=reason)
            )
        except Exception as exc:
            # Not lost, only late: the engine expires a lease nobody renews after lease_ttl_ms.
            self.log.warning(
                "cannot release leases; they expire instead",
                worker_id=session.worker_id,
                leases=len(leases),
                error=repr(exc),
            )

    # -- heartbeats and leases -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Close silent workers; renew the leases of live ones every lease_ttl / 3 (at most a
        second apart: the answer also names the runs being cancelled, which their workers must
        hear of promptly).

        The loop's only wait is its tick, so a stall is measured as the tick's lateness wherever
        it lands (but in the tick's own few lines): a renewal awaited here would hide a stall
        that lands while the engine answers (the process stopped mid-call, then the tick runs
        on time) and would hold up the heartbeat watch for as long as the engine is slow.
        Renewals run beside it, one at a time: one slower than ``renew_every`` pushes the next
        one back rather than overlapping it."""
        interval = self.settings[HEARTBEAT_INTERVAL_MS] / 1000
        renew_every = min(self.settings[LEASE_TTL_MS] / 3000, MAX_RENEW_INTERVAL_S)
        # Ticks often enough for both jobs: a lease_ttl_ms under 3 heartbeat intervals must not
        # let leases expire between renewals.
        tick = min(interval, renew_every)
        last_renewal = time.monotonic()
        while True:
            due = time.monotonic() + tick
            await asyncio.sleep(tick)
            now = time.monotonic()
            self._excuse_stall(now - due, interval)
            for session in list(self.sessions.values()):
                if now - session.last_seen > MISSED_HEARTBEATS * interval:
                    self._end(session, f"no heartbeat for {now - session.last_seen:.1f}s")
            if self.tokens is not None:
                self._close_revoked()
            if now - last_renewal >= renew_every and (
                self._renewal is None or self._renewal.done()
            ):
                last_renewal = now
                self._renewal = self._spawn(self._renew())

    def _excuse_stall(self, late: float, interval: float) -> None:
        """This tick came ``late`` seconds late: our event loop did not run meanwhile (a long
        pause, a stopped or starved process), so we read nothing either. A worker's silence is
        counted only while we listen: the heartbeats a live worker sent meanwhile are waiting to
        be read, and reading them comes after this tick, so the stall is taken off everyone's
        silence rather than held against them."""
        if late <= 0:
            return
        for session in self.sessions.values():
            session.last_seen += late
        if late > interval and self.sessions:
            self.log.warning(
                "the coordinator did not run for a while; workers' silence meanwhile is not "
                "held against them",
                stalled_s=round(late, 2),
                workers=len(self.sessions),
            )

    async def _renew(self) -> None:
        held = {
            lease: session
            for session in self.sessions.values()
            for lease in session.in_flight.values()
        }
        if not held:
            return
        try:
            response = await self.dispatcher.renew_leases(
                RenewLeasesRequest(lease_ids=list(held), lease_ttl_ms=self.settings[LEASE_TTL_MS])
            )
        except Exception as exc:  # the next renewal is due renew_every after this one began
            self.log.warning("lease renewal failed", error=repr(exc))
            return
        try:
            self._renewed(held, response)
        except Exception:  # a bug: logged here, as the task's end is awaited by nobody
            self.log.exception("handling a lease renewal's answer failed")

    def _renewed(self, held: dict[str, WorkerSession], response: RenewLeasesResponse) -> None:
        for lease in response.lost:
            if lease not in held:
                continue
            session = held[lease]
            for run_id, lease_id in list(session.in_flight.items()):
                if lease_id == lease and run_id in session.reporting:
                    session.finish(run_id, lease_id)  # the report being forwarded ended it
                elif lease_id == lease:
                    # The run is no longer this worker's: it ended (timed out, cancelled), or
                    # the engine let the lease expire (renewed too late: this coordinator
                    # stalled or could not reach the engine for lease_ttl_ms) and the run goes
                    # to another attempt. Either way the worker's reports under it are refused.
                    self.log.warning(
                        "lease of a run in flight is no longer current; the worker's attempt is "
                        "fenced",
                        worker_id=session.worker_id,
                        run_id=run_id,
                        function=_function(session, run_id),
                        lease_id=lease_id,
                        reason="the engine ended the lease: the run ended, or the lease expired "
                        "before it was renewed",
                    )
                    session.finish(run_id, lease_id)
        for lease in response.cancel_requested:
            if lease in held:
                held[lease].notify_cancel(lease)


async def _close(stream: AsyncIterator[Any]) -> None:
    """Close a take stream we stopped reading (broken, cancelled, or a bug in the loop), now: left
    open, the engine's side goes on leasing runs to a stream nobody reads (they wait out their
    leases), and an async generator would close only when collected. ``aclose`` if it has one
    (an async generator, a grpc stream wrapper); an error closing a broken stream is no news, and
    one that does not close within ``TAKE_CLOSE_S`` is left (its runs wait out their leases)
    rather than holding up the session's end."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(TAKE_CLOSE_S):
            await aclose()


async def _messages(stream: WorkerStream) -> AsyncIterator[WorkerMessage]:
    """A worker stream's messages until the worker ends its side."""
    while (message := await stream.receive()) is not None:
        yield message


def _function(session: WorkerSession, run_id: str) -> str | None:
    """The function of a run in flight on ``session``, for its log lines (None: not in flight)."""
    flight = session.flights.get(run_id)
    return flight.function if flight is not None else None


def _note_steps(session: WorkerSession, report: ReportRequest) -> bool:
    """Note which step the run is in, as its reports say, to name it if the worker is lost.
    Whether the report may end the attempt (and its lease): any command but a step's start or
    completion, an emit and a patch marker may."""
    ending = False
    mine = session.in_flight.get(report.run_id) == report.lease_id
    for command in report.commands:
        if (started := command.step_started) is not None:
            if mine:
                session.steps[report.run_id] = started.name
        elif command.step_completed is not None:
            session.steps.pop(report.run_id, None)
        elif command.step_failed is not None:
            session.steps.pop(report.run_id, None)
            ending = True  # a retry scheduled ends it
        elif command.emit is None and command.patched is None:
            ending = True
    return ending


def _trace_dispatch(session: WorkerSession, item: WorkItem, run: Run) -> None:
    """The dispatch as a span in the run's trace (``trine.dispatch``); the worker's attempt
    span is its child (``WorkItem.trace_context``)."""
    lease = item.lease
    with tracing.span(
        f"trine.dispatch {run.function}",
        run.trace_context,
        kind=tracing.SpanKind.PRODUCER,
        attributes={
            "trine.run_id": run.id,
            "trine.function": run.function,
            "trine.attempt": lease.attempt if lease is not None else 0,
            "trine.worker_id": session.worker_id,
        },
    ) as span:
        if span is not None:  # else the worker's spans follow the run's (unsampled) context
            item.trace_context = tracing.inject()


def _check_names(register: Register) -> None:
    """InvalidArgument unless the worker's id and every function's name pass the name rule."""
    problem = name_problem(register.worker_id, "a worker_id")
    for spec in register.functions:
        problem = problem or name_problem(spec.name, "a function's name")
    if problem is not None:
        raise InvalidArgument(problem)
