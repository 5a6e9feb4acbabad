"""The ``Dispatcher`` side of :class:`~trine_core.testing.memory.MemoryEngine`: registering
functions (and resuming the runs an older build blocked), leasing runs out (``take_work``: a
pinned run only to its build), renewing and releasing leases, and a worker's report (checked
against its lease, applied whole or not at all, and what it leaves the run: finished, blocked,
retried, suspended or still running). Each command's effect is in :mod:`.commands`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import AsyncIterator

from trine_core import errors
from trine_core.fallbacks import report_each, take_work_polling
from trine_core.names import check_duration
from trine_core.testing.memory.commands import apply_commands
from trine_core.testing.memory.runs import LEASE_TTL_MS, Runs, RunState
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import name_problem

_S, _O = pb.RunStatus, pb.ReportOutcome


class Reports(Runs):
    async def register_functions(
        self, message: pb.RegisterFunctionsRequest
    ) -> pb.RegisterFunctionsResponse:
        self._record("register_functions", message)
        if any(not spec.name for spec in message.functions):
            raise errors.InvalidArgument("a function needs a name")
        for spec in message.functions:
            if (problem := name_problem(spec.name, "a function's name")) is not None:
                raise errors.InvalidArgument(problem)
            check_duration(spec.timeout_ms, f"the timeout of function {spec.name!r}")
        build_id, names = message.build_id, {spec.name for spec in message.functions}
        for spec in message.functions:
            self.functions[spec.name] = dataclasses.replace(spec, build_id=build_id)
        self._builds.registered(build_id, names, self.clock())
        for state in list(self._runs.values()):  # a new build may have fixed what blocked them
            run = state.run
            blocked = run.status == _S.BLOCKED and run.function in names
            if blocked and build_id and build_id != run.blocked_build_id:
                self._retry(state, f"build {build_id} registered", automatic=True)
        self._wake()
        return pb.RegisterFunctionsResponse()

    async def take_work(self, message: pb.TakeWorkRequest) -> pb.TakeWorkResponse:
        """Woken by any change (a start, a release, a resume). Leasing and answering have no await
        between them, so a call cancelled while it waits has taken nothing."""
        self._record("take_work", message)
        self._builds.took(message.build_id, self.clock())
        items: list[pb.WorkItem] = []

        def take() -> bool:
            items.extend(self._take(message))
            return bool(items)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(message.wait_ms / 1000):
                await self._until(take)
        return pb.TakeWorkResponse(items=items)

    def take_work_stream(
        self, requests: AsyncIterator[pb.TakeWorkRequest]
    ) -> AsyncIterator[pb.TakeWorkResponse]:
        """``take_work`` long-polls within the stream's credit."""
        return take_work_polling(self.take_work, requests)

    async def report_batch(self, message: pb.ReportBatchRequest) -> pb.ReportBatchResponse:
        """Each report as ``report`` answers it (memory has no commit to share)."""
        return await report_each(self.report, message)

    async def report(self, message: pb.ReportRequest) -> pb.ReportResponse:
        """Applied whole or, when a command is refused, not at all. A run's build is the build
        of the first worker whose report was applied: one with none yet gets the lease's."""
        self._record("report", message)
        state, lease_id = self._require(message.run_id), message.lease_id
        commands = message.commands
        if state.lease is None or state.lease[0] != lease_id:
            ending = ("run_completed", "run_failed", "run_blocked")
            ends = any(getattr(c, kind) is not None for c in commands for kind in ending)
            held = state.final or state.run.status == _S.BLOCKED
            if held and ends and lease_id and lease_id == state.finished_lease:
                return pb.ReportResponse(outcome=_O.FINISHED)  # a final report sent again
            what = f"lease {lease_id!r} is not the current lease of run {state.run.id}"
            raise errors.LeaseLost(what, run_id=state.run.id, lease_id=lease_id)
        signals = {name: deque(kept) for name, kept in state.signals.items()}
        saved = (len(state.journal), len(state.events), dict(state.step_attempts), signals)
        try:
            answer, end = apply_commands(self, state, commands)
        except errors.TrineError:
            journal, events, state.step_attempts, state.signals = saved
            for entry in state.journal[journal:]:  # children of the refused report
                self._runs.pop(entry.child_run_id, None)
            del state.journal[journal:], state.events[events:]
            raise
        _lease_id, _worker, attempt, build_id = state.lease
        run = state.run = dataclasses.replace(
            state.run, attempt=attempt, build_id=state.run.build_id or build_id
        )
        if end is not None:
            answer.outcome, state.finished_lease = _O.FINISHED, lease_id
            if end[0] == _S.BLOCKED:
                self._block(state, end[2])
            else:
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
        """Lease the first runs in line of those functions, but a pinned run only to a taker of
        its build (it keeps its place in line). Taking gives a run no build (its first report
        does, see :meth:`report`)."""
        items: list[pb.WorkItem] = []
        for run_id in list(self._ready):
            state = self._runs.get(run_id)
            if len(items) >= (message.max_items or 1):
                break
            if state is None or state.lease or state.run.status != _S.PENDING:
                self._ready.remove(run_id)  # stale: cancelled while in line, say
            elif state.run.function in message.functions and self._may_take(state, message):
                self._ready.remove(run_id)
                state.dispatches = attempt = max(state.dispatches, state.run.attempt) + 1
                lease_id = f"lease-{next(self._ids)}"
                state.lease = (lease_id, message.worker_id, attempt, message.build_id)
                self._leases[lease_id] = run_id
                expires = self.clock() + (message.lease_ttl_ms or LEASE_TTL_MS)
                lease = pb.Lease(id=lease_id, attempt=attempt, expires_at_ms=expires)
                item = pb.WorkItem(run=self._view(state), lease=lease, journal=list(state.journal))
                items.append(dataclasses.replace(item, step_attempts=dict(state.step_attempts)))
        return items

    def _may_take(self, state: RunState, message: pb.TakeWorkRequest) -> bool:
        return not self._pinned(state.run) or state.run.build_id == message.build_id

    def _leased(self, lease_id: str) -> RunState | None:
        """The run whose current lease this is."""
        state = self._runs.get(self._leases.get(lease_id, ""))
        return state if state and state.lease and state.lease[0] == lease_id else None
