"""The contract suites: what every ``Backend``, ``Dispatcher`` and ``WorkerRegistry`` must do, as
pytest tests.

The engine, each transport (around the engine, or around any implementation), each fake that
stands in for the engine in a plugin's own tests, and a third party's implementation run the same
tests. Subclass the suite in a test module and give it a ``subject`` fixture::

    from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract

    class TestMyTransport(BackendContract, DispatcherContract):
        @pytest_asyncio.fixture  # or @pytest.fixture with asyncio_mode = "auto"
        async def subject(self) -> AsyncIterator[ContractSubject]:
            ...  # serve an implementation through your transport, connect, and
            yield ContractSubject(backend=client_backend, dispatcher=client_dispatcher)

The two contracts meet in one provider (a run started through ``Backend`` is taken through
``Dispatcher``), so each suite drives its runs through the other contract. The tests need no
timers and no sleeps: every wait is on an answer or bounded by a short timeout.

``WorkerRegistryContract`` (a coordinator, each transport around one, the in-memory one of
:mod:`trine_core.testing.workers`) takes its subject from a ``worker_registry`` fixture, so one
class can run it beside the other two: a :class:`WorkerRegistrySubject`, the registry as the
gateway sees it and :class:`Workers` that make workers connect, take runs and leave at the
coordinator behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import pytest
import pytest_asyncio

from trine_core.errors import (
    IdempotencyConflict,
    InvalidArgument,
    LeaseLost,
    PayloadTooLarge,
    RunFinished,
    RunNotFound,
    RunNotRetryable,
    UnknownBuild,
    UnknownFunction,
)
from trine_core.protocols import Backend, Dispatcher, WorkerRegistry
from trine_proto.trine.v1 import (
    CancelRunRequest,
    Command,
    Emit,
    EntryKind,
    ErrorInfo,
    Event,
    FunctionSpec,
    GetJournalRequest,
    GetRunRequest,
    JournalEntry,
    KeptSignals,
    ListBuildsRequest,
    ListFunctionsRequest,
    ListRunsRequest,
    ListWorkersRequest,
    ListWorkersResponse,
    MoveRunRequest,
    Patched,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
    RenewLeasesRequest,
    ReportBatchRequest,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    RetryRunRequest,
    Run,
    RunBlocked,
    RunCompleted,
    RunFailed,
    RunStatus,
    SignalRunRequest,
    Sleep,
    StartChild,
    StartRunRequest,
    StepCompleted,
    StepFailed,
    StepStarted,
    SubscribeRequest,
    TakeWorkRequest,
    VersioningMode,
    WaitRunRequest,
    WaitSignal,
    WorkerInfo,
    WorkItem,
)
from trine_proto.vocabulary import FINAL_STATUSES, MAX_DURATION_MS, EventType, now_ms

FUNCTION = "contract-fn"
OTHER = "contract-other"
SHORT_MS = 50
"""A wait that must run out: short, since nothing will come."""
LONG_MS = 5_000
"""A wait that must be answered well before it runs out."""
BUILD_A, BUILD_B = "contract-build-a", "contract-build-b"


@dataclasses.dataclass
class ContractSubject:
    """The implementation under test: both contracts of one provider, as a consumer sees them."""

    backend: Backend
    dispatcher: Dispatcher
    max_payload_bytes: int = 1 << 20
    """The provider's payload limit (an input just over it must be refused)."""


class _Driver:
    """Drives runs the way a gateway and a worker would."""

    def __init__(self, subject: ContractSubject) -> None:
        self.backend = subject.backend
        self.dispatcher = subject.dispatcher

    async def register(self, *names: str) -> None:
        specs = [FunctionSpec(name=name) for name in names or (FUNCTION,)]
        await self.dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="contract-worker", functions=specs)
        )

    async def register_build(
        self,
        build_id: str,
        *names: str,
        versioning: VersioningMode = VersioningMode.UNSPECIFIED,
    ) -> None:
        """A worker of ``build_id`` registers ``names`` (``FUNCTION`` by default)."""
        specs = [FunctionSpec(name=name, versioning=versioning) for name in names or (FUNCTION,)]
        await self.dispatcher.register_functions(
            RegisterFunctionsRequest(
                worker_id=f"worker-{build_id}", functions=specs, build_id=build_id
            )
        )

    async def start(self, data: Any = None, key: str = "", function: str = FUNCTION) -> Run:
        answer = await self.backend.start_run(
            StartRunRequest(function=function, input=json.dumps(data).encode(), idempotency_key=key)
        )
        assert answer.run is not None
        return answer.run

    async def take(
        self, wait_ms: int = LONG_MS, function: str = FUNCTION, build_id: str = ""
    ) -> list[WorkItem]:
        worker_id = f"worker-{build_id}" if build_id else "contract-worker"
        answer = await self.dispatcher.take_work(
            TakeWorkRequest(
                worker_id=worker_id,
                functions=[function],
                max_items=10,
                wait_ms=wait_ms,
                build_id=build_id,
            )
        )
        return list(answer.items)

    async def take_one(self, run_id: str, build_id: str = "") -> WorkItem:
        items = await self.take(build_id=build_id)
        assert [item.run.id for item in items if item.run is not None] == [run_id]
        return items[0]

    async def release(self, item: WorkItem) -> None:
        assert item.lease is not None
        await self.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))

    async def fail_at_second_step(self, item: WorkItem) -> None:
        """The first step completes, the second fails for good, and the workflow fails with it."""
        error = ErrorInfo(type="ValueError", message="bad card", retryable=False)
        failed = StepFailed(index=1, name="charge", attempt=1, error=error)
        step = await self.report(item, _step(0, "greet", {"hi": 1}), Command(step_failed=failed))
        assert step.outcome == ReportOutcome.STEP_FAILED
        ended = await self.report(item, Command(run_failed=RunFailed(error=error)))
        assert ended.outcome == ReportOutcome.FINISHED

    async def block(self, item: WorkItem) -> ReportResponse:
        """One step, then a workflow error under ``on_workflow_error = block``."""
        error = ErrorInfo(type="NonDeterminismError", message="the code changed")
        return await self.report(
            item, _step(0, "greet", {"hi": 1}), Command(run_blocked=RunBlocked(error=error))
        )

    async def journal(self, run_id: str) -> list[tuple[int, EntryKind, str]]:
        answer = await self.backend.get_journal(GetJournalRequest(run_id=run_id))
        return [(entry.index, entry.kind, entry.name) for entry in answer.entries]

    async def events_after(self, run_id: str, after_seq: int, count: int) -> list[Event]:
        """The next ``count`` events after ``after_seq`` (a run retried after its final event
        goes on: a subscription to it does not end by itself)."""
        stream = self.backend.subscribe(SubscribeRequest(run_id=run_id, after_seq=after_seq))
        async with asyncio.timeout(LONG_MS / 1000):
            return [await anext(stream) for _ in range(count)]

    async def unchanged(self, run: Run) -> None:
        """Nothing happened to the run since ``run`` was read: a refusal changed nothing."""
        now = await self.run(run.id)
        assert (now.status, now.build_id, now.retries, now.last_event_seq, now.journal_length) == (
            run.status,
            run.build_id,
            run.retries,
            run.last_event_seq,
            run.journal_length,
        )

    async def report(self, item: WorkItem, *commands: Command) -> ReportResponse:
        assert item.run is not None
        assert item.lease is not None
        return await self.dispatcher.report(
            ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=list(commands))
        )

    async def complete(self, item: WorkItem, result: Any = "done") -> ReportResponse:
        """One step, then the run's result."""
        return await self.report(
            item,
            Command(step_started=StepStarted(index=0, name="greet", attempt=1)),
            Command(step_completed=StepCompleted(entry=_entry(0, "greet", {"hi": 1}))),
            Command(run_completed=RunCompleted(result=json.dumps(result).encode())),
        )

    async def run(self, run_id: str) -> Run:
        return await self.backend.get_run(GetRunRequest(run_id=run_id))

    async def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        stream = self.backend.subscribe(SubscribeRequest(run_id=run_id, after_seq=after_seq))
        async with asyncio.timeout(LONG_MS / 1000):
            return [event async for event in stream]


def _entry(index: int, name: str, output: Any) -> JournalEntry:
    return JournalEntry(index=index, name=name, output=json.dumps(output).encode(), attempt=1)


async def _requests(
    queue: asyncio.Queue[TakeWorkRequest | None],
) -> AsyncIterator[TakeWorkRequest]:
    """A ``take_work_stream``'s requests, as a test puts them (None: they end)."""
    while (request := await queue.get()) is not None:
        yield request


def _step(index: int, name: str, output: Any) -> Command:
    return Command(step_completed=StepCompleted(entry=_entry(index, name, output)))


class _Suite:
    pytestmark = pytest.mark.asyncio

    @pytest_asyncio.fixture
    async def drive(self, subject: ContractSubject) -> _Driver:
        driver = _Driver(subject)
        await driver.register(FUNCTION, OTHER)
        return driver


class BackendContract(_Suite):
    """What the gateway relies on, whatever carries it."""

    async def test_an_unregistered_function_is_refused_with_the_known_ones(
        self, drive: _Driver
    ) -> None:
        with pytest.raises(UnknownFunction) as caught:
            await drive.start(function="never-registered")
        assert FUNCTION in caught.value.details["known"]

    async def test_a_started_run_is_pending_and_readable(self, drive: _Driver) -> None:
        run = await drive.start({"who": "ada"})
        assert run.status == RunStatus.PENDING
        read = await drive.run(run.id)
        assert (read.id, read.function, json.loads(read.input)) == (
            run.id,
            FUNCTION,
            {"who": "ada"},
        )

    async def test_an_idempotency_key_starts_one_run(self, drive: _Driver) -> None:
        first = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"1", idempotency_key="k-1")
        )
        again = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"1", idempotency_key="k-1")
        )
        assert first.created
        assert not again.created
        assert first.run is not None
        assert again.run is not None
        assert again.run.id == first.run.id

    async def test_an_idempotency_key_with_another_request_is_a_conflict(
        self, drive: _Driver
    ) -> None:
        """The same key with another input, timeout or function is ``idempotency_conflict``
        naming what differs and the run the key started; the same request again is that run."""
        first = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"1", idempotency_key="k-2", timeout_ms=5000)
        )
        assert first.run is not None
        others = {
            "another input": StartRunRequest(
                function=FUNCTION, input=b"2", idempotency_key="k-2", timeout_ms=5000
            ),
            "another timeout": StartRunRequest(
                function=FUNCTION, input=b"1", idempotency_key="k-2", timeout_ms=6000
            ),
        }
        for what, request in others.items():
            with pytest.raises(IdempotencyConflict) as raised:
                await drive.backend.start_run(request)
            assert what in raised.value.message
            assert first.run.id in raised.value.message
            assert raised.value.details == {"key": "k-2", "run_id": first.run.id}
        again = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"1", idempotency_key="k-2", timeout_ms=5000)
        )
        assert not again.created
        assert again.run is not None
        assert again.run.id == first.run.id

    async def test_a_runs_trace_context_is_stored_and_reaches_its_worker_and_children(
        self, drive: _Driver
    ) -> None:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        answer = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"1", trace_context={"traceparent": parent})
        )
        assert answer.run is not None
        run_id = answer.run.id
        assert (await drive.run(run_id)).trace_context == {"traceparent": parent}
        item = await drive.take_one(run_id)
        assert item.run is not None
        assert item.run.trace_context == {"traceparent": parent}
        mine = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
        await drive.report(
            item,
            Command(start_child=StartChild(index=0, function=OTHER, input=b"1")),
            Command(
                start_child=StartChild(
                    index=1, function=OTHER, input=b"2", trace_context={"traceparent": mine}
                )
            ),
        )
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run_id))
        children = [await drive.run(entry.child_run_id) for entry in journal.entries]
        assert [child.trace_context for child in children] == [
            {"traceparent": parent},
            {"traceparent": mine},
        ]

    async def test_unknown_runs_are_not_found(self, drive: _Driver) -> None:
        missing = "01NOSUCHRUN000000000000000"
        with pytest.raises(RunNotFound):
            await drive.run(missing)
        with pytest.raises(RunNotFound):
            await drive.backend.get_journal(GetJournalRequest(run_id=missing))
        with pytest.raises(RunNotFound):
            await drive.backend.cancel_run(CancelRunRequest(run_id=missing))
        with pytest.raises(RunNotFound):
            await drive.backend.signal_run(SignalRunRequest(run_id=missing, name="go"))

    async def test_an_input_over_the_limit_is_refused(
        self, drive: _Driver, subject: ContractSubject
    ) -> None:
        data = b'"' + b"x" * subject.max_payload_bytes + b'"'
        with pytest.raises(PayloadTooLarge):
            await drive.backend.start_run(StartRunRequest(function=FUNCTION, input=data))

    async def test_an_input_that_is_not_json_or_a_timeout_past_100_years_is_refused(
        self, drive: _Driver
    ) -> None:
        for request in (
            StartRunRequest(function=FUNCTION, input=b"{bad"),
            StartRunRequest(function=FUNCTION, input=b"1", timeout_ms=2**64 - 1),
        ):
            with pytest.raises(InvalidArgument):
                await drive.backend.start_run(request)

    async def test_listing_pages_through_every_run_once_in_creation_order(
        self, drive: _Driver
    ) -> None:
        ids = [(await drive.start(i)).id for i in range(5)]
        await drive.start(function=OTHER)
        seen: list[str] = []
        token = ""
        while True:
            page = await drive.backend.list_runs(
                ListRunsRequest(function=FUNCTION, limit=2, page_token=token)
            )
            seen += [run.id for run in page.runs]
            token = page.next_page_token
            if not token:
                break
        assert seen == ids
        pending = await drive.backend.list_runs(ListRunsRequest(status=RunStatus.PENDING))
        assert set(ids) <= {run.id for run in pending.runs}
        completed = await drive.backend.list_runs(ListRunsRequest(status=RunStatus.COMPLETED))
        assert not set(ids) & {run.id for run in completed.runs}

    async def test_listing_newest_first_and_by_creation_time(self, drive: _Driver) -> None:
        runs = [await drive.start(i) for i in range(5)]
        ids = [run.id for run in runs]
        await drive.start(function=OTHER)

        async def listed(**fields: Any) -> list[str]:
            seen: list[str] = []
            token = ""
            while True:
                request = ListRunsRequest(function=FUNCTION, limit=2, page_token=token, **fields)
                page = await drive.backend.list_runs(request)
                seen += [run.id for run in page.runs]
                token = page.next_page_token
                if not token:
                    return seen

        assert await listed(newest_first=True) == ids[::-1]
        assert await listed(newest_first=True, status=RunStatus.PENDING) == ids[::-1]
        assert await listed(status=RunStatus.PENDING) == ids
        first, last = runs[0].created_at_ms, runs[-1].created_at_ms
        assert await listed(created_after_ms=first, created_before_ms=last + 1) == ids
        assert await listed(newest_first=True, created_after_ms=first) == ids[::-1]
        assert await listed(created_before_ms=first) == []  # before: strictly
        assert await listed(created_after_ms=last + 1, newest_first=True) == []
        assert await listed(created_after_ms=last + 1, status=RunStatus.PENDING) == []

    async def test_wait_run_answers_at_its_timeout_then_once_final(self, drive: _Driver) -> None:
        run = await drive.start()
        waited = await drive.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=SHORT_MS))
        assert waited.status not in FINAL_STATUSES
        waiter = asyncio.ensure_future(
            drive.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=LONG_MS))
        )
        await drive.complete(await drive.take_one(run.id), {"ok": True})
        final = await asyncio.wait_for(waiter, LONG_MS / 1000)
        assert final.status == RunStatus.COMPLETED
        assert json.loads(final.result) == {"ok": True}

    async def test_a_start_that_waits_answers_once_final_or_says_it_did_not_wait(
        self, drive: _Driver
    ) -> None:
        """``wait_ms`` on a start: the run once final (``waited``), or at once without waiting
        (``waited`` false: the caller then waits with ``wait_run``); either way one run."""
        body = json.dumps({"n": 1}).encode()
        request = StartRunRequest(
            function=FUNCTION, input=body, idempotency_key="w", wait_ms=LONG_MS
        )
        starting = asyncio.ensure_future(drive.backend.start_run(request))
        items = await drive.take()
        assert len(items) == 1
        assert items[0].run is not None
        run_id = items[0].run.id
        await drive.complete(items[0], {"ok": True})
        answer = await asyncio.wait_for(starting, LONG_MS / 1000)
        assert answer.run is not None
        assert answer.run.id == run_id
        assert answer.created
        if answer.waited:
            assert answer.run.status == RunStatus.COMPLETED
            assert json.loads(answer.run.result) == {"ok": True}
        else:
            assert answer.run.status not in FINAL_STATUSES
        again = await drive.backend.start_run(request)  # the key's run, final already
        assert again.run is not None
        assert again.run.id == run_id
        assert not again.created
        if again.waited:
            assert again.run.status == RunStatus.COMPLETED
        short = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=body, wait_ms=SHORT_MS)
        )
        assert short.run is not None
        assert short.run.status not in FINAL_STATUSES
        assert short.created

    async def test_a_completed_run_shows_its_journal_and_events(self, drive: _Driver) -> None:
        run = await drive.start()
        await drive.complete(await drive.take_one(run.id))
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run.id))
        assert [(e.index, e.name, json.loads(e.output)) for e in journal.entries] == [
            (0, "greet", {"hi": 1})
        ]
        events = await drive.events(run.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].type == EventType.RUN_STARTED
        assert EventType.STEP_COMPLETED in [e.type for e in events]
        assert events[-1].type == EventType.RUN_COMPLETED
        later = await drive.events(run.id, after_seq=events[1].seq)
        assert [e.seq for e in later] == [e.seq for e in events[2:]]

    async def test_a_subscription_follows_a_live_run_to_its_end(self, drive: _Driver) -> None:
        run = await drive.start()
        follower = asyncio.ensure_future(drive.events(run.id))
        await drive.complete(await drive.take_one(run.id))
        events = await follower
        assert events[-1].type == EventType.RUN_COMPLETED

    async def test_a_run_that_never_started_is_cancelled_at_once(self, drive: _Driver) -> None:
        run = await drive.start()
        cancelled = await drive.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="no"))
        assert cancelled.status == RunStatus.CANCELLED
        with pytest.raises(RunFinished):
            await drive.backend.cancel_run(CancelRunRequest(run_id=run.id))
        with pytest.raises(RunFinished):
            await drive.backend.signal_run(SignalRunRequest(run_id=run.id, name="go"))

    async def test_a_signal_before_any_wait_is_kept(self, drive: _Driver) -> None:
        run = await drive.start()
        answer = await drive.backend.signal_run(
            SignalRunRequest(run_id=run.id, name="go", payload=b'{"n":1}')
        )
        assert not answer.delivered
        kept = [KeptSignals(name="go", count=1, bytes=7)]  # derived: per name, count and bytes
        assert answer.run is not None
        assert answer.run.kept_signals == kept
        assert (await drive.run(run.id)).kept_signals == kept
        with pytest.raises(InvalidArgument):
            await drive.backend.signal_run(SignalRunRequest(run_id=run.id, name="bad name!"))
        item = await drive.take_one(run.id)
        taken = await drive.report(item, Command(wait_signal=WaitSignal(index=0, name="go")))
        assert taken.outcome == ReportOutcome.CONTINUE
        assert (await drive.run(run.id)).kept_signals == []  # the wait took it

    async def test_registered_functions_are_listed(self, drive: _Driver) -> None:
        listed = await drive.backend.list_functions(ListFunctionsRequest())
        assert {FUNCTION, OTHER} <= {spec.name for spec in listed.functions}

    async def test_a_failed_run_is_retried_from_its_failed_step(self, drive: _Driver) -> None:
        run = await drive.start(key="k-retry")
        await drive.fail_at_second_step(await drive.take_one(run.id))
        failed = await drive.run(run.id)
        assert failed.status == RunStatus.FAILED
        retried = await drive.backend.retry_run(RetryRunRequest(run_id=run.id, reason="fixed"))
        assert (retried.id, retried.status, retried.retries, retried.error) == (
            run.id,
            RunStatus.PENDING,
            1,
            None,
        )
        assert await drive.journal(run.id) == [(0, EntryKind.STEP, "greet")]
        [event] = await drive.events_after(run.id, failed.last_event_seq, 1)
        assert (event.type, json.loads(event.data)) == (
            EventType.RUN_RETRIED,
            {"from_index": 1, "reason": "fixed", "automatic": False, "retries": 1},
        )
        again = await drive.backend.start_run(
            StartRunRequest(function=FUNCTION, input=b"null", idempotency_key="k-retry")
        )
        assert again.run is not None
        assert (again.created, again.run.id) == (False, run.id)
        item = await drive.take_one(run.id)
        assert [(e.index, e.name) for e in item.journal] == [(0, "greet")]
        assert 1 not in item.step_attempts  # counted afresh
        done = await drive.report(
            item, _step(1, "charge", "ok"), Command(run_completed=RunCompleted(result=b"1"))
        )
        assert done.outcome == ReportOutcome.FINISHED
        assert (await drive.run(run.id)).status == RunStatus.COMPLETED
        types = [event.type for event in await drive.events(run.id)]  # past the failure
        assert types.index(EventType.RUN_FAILED) < types.index(EventType.RUN_RETRIED)
        assert types[-1] == EventType.RUN_COMPLETED

    async def test_only_a_failed_or_blocked_run_is_retried(self, drive: _Driver) -> None:
        with pytest.raises(RunNotFound):
            await drive.backend.retry_run(RetryRunRequest(run_id="01NOSUCHRUN000000000000000"))
        pending = await drive.run((await drive.start()).id)
        with pytest.raises(RunNotRetryable):
            await drive.backend.retry_run(RetryRunRequest(run_id=pending.id))
        await drive.unchanged(pending)
        item = await drive.take_one(pending.id)
        await drive.report(item, _step(0, "a", 1))
        running = await drive.run(pending.id)
        assert running.status == RunStatus.RUNNING
        with pytest.raises(RunNotRetryable):
            await drive.backend.retry_run(RetryRunRequest(run_id=pending.id))
        await drive.unchanged(running)
        await drive.report(item, Command(run_completed=RunCompleted(result=b"1")))
        completed = await drive.run(pending.id)
        with pytest.raises(RunNotRetryable):
            await drive.backend.retry_run(RetryRunRequest(run_id=pending.id))
        await drive.unchanged(completed)
        assert (await drive.run(pending.id)).status == RunStatus.COMPLETED

    async def test_a_run_moves_only_to_a_build_that_registered_its_function(
        self, drive: _Driver
    ) -> None:
        await drive.register_build(BUILD_A, FUNCTION)
        await drive.register_build(BUILD_B, OTHER)
        run = await drive.run((await drive.start()).id)
        for build_id in ("contract-build-never", BUILD_B):  # B serves only OTHER
            with pytest.raises(UnknownBuild):
                await drive.backend.move_run(MoveRunRequest(run_id=run.id, build_id=build_id))
            await drive.unchanged(run)
        moved = await drive.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_A))
        assert (moved.id, moved.build_id) == (run.id, BUILD_A)
        assert (await drive.run(run.id)).build_id == BUILD_A
        [event] = await drive.events_after(run.id, run.last_event_seq, 1)
        assert (event.type, json.loads(event.data)["build_id"]) == (EventType.RUN_MOVED, BUILD_A)
        with pytest.raises(RunNotFound):
            await drive.backend.move_run(
                MoveRunRequest(run_id="01NOSUCHRUN000000000000000", build_id=BUILD_A)
            )
        await drive.backend.cancel_run(CancelRunRequest(run_id=run.id))
        with pytest.raises(RunFinished):
            await drive.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_A))

    async def test_builds_are_listed_with_their_functions_and_open_runs(
        self, drive: _Driver
    ) -> None:
        before = now_ms()
        await drive.register_build(BUILD_A, FUNCTION)
        await drive.register_build(BUILD_B, FUNCTION, OTHER)
        run = await drive.start()
        await drive.report(await drive.take_one(run.id, build_id=BUILD_A), _step(0, "a", 1))
        listed = (await drive.backend.list_builds(ListBuildsRequest())).builds
        assert [b.build_id for b in listed] == sorted(b.build_id for b in listed)
        builds = {b.build_id: b for b in listed if b.build_id in (BUILD_A, BUILD_B)}
        assert sorted(builds) == [BUILD_A, BUILD_B]
        a, b = builds[BUILD_A], builds[BUILD_B]
        assert (sorted(a.functions), a.open_runs, a.connected) == ([FUNCTION], 1, True)
        assert (sorted(b.functions), b.open_runs) == (sorted([FUNCTION, OTHER]), 0)
        assert before - 1 <= a.last_seen_ms <= now_ms() + 1
        assert before - 1 <= b.last_seen_ms <= now_ms() + 1
        functions = await drive.backend.list_functions(ListFunctionsRequest())
        by_name = {spec.name: spec for spec in functions.functions}
        assert (by_name[FUNCTION].build_id, by_name[OTHER].build_id) == (BUILD_B, BUILD_B)


class DispatcherContract(_Suite):
    """What the coordinator relies on, whatever carries it."""

    async def test_take_work_runs_out_empty_when_nothing_is_ready(self, drive: _Driver) -> None:
        assert await drive.take(wait_ms=SHORT_MS) == []

    async def test_a_waiting_take_work_gets_a_run_started_meanwhile(self, drive: _Driver) -> None:
        taking = asyncio.ensure_future(drive.take(wait_ms=LONG_MS))
        run = await drive.start()
        items = await asyncio.wait_for(taking, LONG_MS / 1000)
        assert [item.run.id for item in items if item.run is not None] == [run.id]
        assert items[0].lease is not None
        assert items[0].lease.id

    async def test_a_report_under_another_lease_is_refused_and_changes_nothing(
        self, drive: _Driver
    ) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        with pytest.raises(LeaseLost):
            await drive.dispatcher.report(
                ReportRequest(run_id=run.id, lease_id="not-a-lease", commands=[_step(0, "a", 1)])
            )
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run.id))
        assert list(journal.entries) == []
        assert (await drive.report(item, _step(0, "a", 1))).outcome == ReportOutcome.CONTINUE

    async def test_a_report_that_would_break_the_journal_is_refused_and_changes_nothing(
        self, drive: _Driver
    ) -> None:
        """A span past 100 years overflows the 64-bit milliseconds of a due time; a payload
        that is not JSON would make every answer carrying it invalid: both are refused before
        anything is journaled, and the run goes on."""
        run = await drive.start()
        item = await drive.take_one(run.id)
        forever = Command(sleep=Sleep(index=0, duration_ms=2**64 - 1))
        not_json = Command(
            step_completed=StepCompleted(entry=JournalEntry(index=0, name="a", output=b"NaN"))
        )
        for command in (forever, not_json):
            with pytest.raises(InvalidArgument):
                await drive.report(item, command)
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run.id))
        assert list(journal.entries) == []
        longest = Command(sleep=Sleep(index=0, duration_ms=MAX_DURATION_MS))
        assert (await drive.report(item, longest)).outcome == ReportOutcome.SUSPENDED

    async def test_a_work_stream_sends_ready_runs_within_its_credit(self, drive: _Driver) -> None:
        """A run is sent only against credit granted and not yet used: a run ready beyond it
        stays for another taker, and more credit brings the next one."""
        runs = [await drive.start(n) for n in range(3)]
        credits: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
        stream = drive.dispatcher.take_work_stream(_requests(credits))
        credits.put_nowait(TakeWorkRequest(worker_id="streamer", functions=[FUNCTION], max_items=2))
        got: list[str] = []
        async with asyncio.timeout(LONG_MS / 1000):
            while len(got) < 2:
                got += [item.run.id for item in (await anext(stream)).items if item.run]
        assert got == [runs[0].id, runs[1].id]
        assert [item.run.id for item in await drive.take(wait_ms=SHORT_MS) if item.run] == [
            runs[2].id
        ]  # beyond the stream's credit: still there for another taker
        later = await drive.start(3)
        credits.put_nowait(TakeWorkRequest(max_items=1))
        async with asyncio.timeout(LONG_MS / 1000):
            response = await anext(stream)
        assert [item.run.id for item in response.items if item.run] == [later.id]
        assert all(item.lease and item.lease.id for item in response.items)
        credits.put_nowait(None)  # the requests end: so does the stream
        async with asyncio.timeout(LONG_MS / 1000):
            assert [r async for r in stream] == []

    async def test_a_work_stream_pushes_a_run_started_while_it_waits(self, drive: _Driver) -> None:
        credits: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
        stream = drive.dispatcher.take_work_stream(_requests(credits))
        credits.put_nowait(TakeWorkRequest(worker_id="streamer", functions=[FUNCTION], max_items=1))
        receiving = asyncio.ensure_future(anext(stream))
        run = await drive.start()
        async with asyncio.timeout(LONG_MS / 1000):
            response = await receiving
        [item] = response.items
        assert item.run is not None
        assert item.run.id == run.id
        assert (await drive.report(item, _step(0, "a", 1))).outcome == ReportOutcome.CONTINUE
        credits.put_nowait(None)
        async with asyncio.timeout(LONG_MS / 1000):
            assert [r async for r in stream] == []

    async def test_a_report_batch_answers_each_report_on_its_own(self, drive: _Driver) -> None:
        """Each report of a batch is fenced by its own lease and gets its own answer, in order:
        one refused (another lease, an unknown run) changes nothing and fails no other."""
        first, second = await drive.start(1), await drive.start(2)
        items = {item.run.id: item for item in await drive.take() if item.run is not None}
        assert set(items) == {first.id, second.id}
        one, two = items[first.id], items[second.id]
        assert one.lease is not None
        assert two.lease is not None
        answer = await drive.dispatcher.report_batch(
            ReportBatchRequest(
                reports=[
                    ReportRequest(
                        run_id=first.id, lease_id=one.lease.id, commands=[_step(0, "a", 1)]
                    ),
                    ReportRequest(
                        run_id=second.id, lease_id="not-a-lease", commands=[_step(0, "x", 0)]
                    ),
                    ReportRequest(run_id="no-such-run", lease_id="no-lease", commands=[]),
                    ReportRequest(
                        run_id=second.id,
                        lease_id=two.lease.id,
                        commands=[Command(run_completed=RunCompleted(result=b"2"))],
                    ),
                ]
            )
        )
        results = list(answer.results)
        assert [r.response.outcome if r.response else None for r in results] == [
            ReportOutcome.CONTINUE,
            None,
            None,
            ReportOutcome.FINISHED,
        ]
        assert [r.error_code for r in results] == ["", "lease_lost", "run_not_found", ""]
        assert await drive.journal(first.id) == [(0, EntryKind.STEP, "a")]
        assert (await drive.run(second.id)).status == RunStatus.COMPLETED
        assert await drive.journal(second.id) == []

    async def test_a_report_batch_applies_one_runs_reports_in_order(self, drive: _Driver) -> None:
        """A run's reports in one batch are journaled in the order sent, as if sent one by one."""
        run = await drive.start()
        item = await drive.take_one(run.id)
        assert item.lease is not None
        lease = item.lease.id
        answer = await drive.dispatcher.report_batch(
            ReportBatchRequest(
                reports=[
                    ReportRequest(run_id=run.id, lease_id=lease, commands=[_step(0, "a", 1)]),
                    ReportRequest(run_id=run.id, lease_id=lease, commands=[_step(1, "b", 2)]),
                    ReportRequest(
                        run_id=run.id,
                        lease_id=lease,
                        commands=[Command(run_completed=RunCompleted(result=b"3"))],
                    ),
                    ReportRequest(run_id=run.id, lease_id=lease, commands=[_step(2, "late", 3)]),
                ]
            )
        )
        outcomes = [r.response.outcome if r.response else r.error_code for r in answer.results]
        assert outcomes == [
            ReportOutcome.CONTINUE,
            ReportOutcome.CONTINUE,
            ReportOutcome.FINISHED,
            "lease_lost",  # the run finished: its lease ended with the report before
        ]
        assert await drive.journal(run.id) == [(0, EntryKind.STEP, "a"), (1, EntryKind.STEP, "b")]
        assert (await drive.dispatcher.report_batch(ReportBatchRequest())).results == []

    async def test_a_final_report_repeated_under_its_lease_finishes_once(
        self, drive: _Driver
    ) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        assert (await drive.complete(item)).outcome == ReportOutcome.FINISHED
        assert (await drive.complete(item)).outcome == ReportOutcome.FINISHED
        events = await drive.events(run.id)
        assert [e.type for e in events].count(EventType.RUN_COMPLETED) == 1

    async def test_a_released_lease_dispatches_the_run_again_with_its_journal(
        self, drive: _Driver
    ) -> None:
        run = await drive.start()
        first = await drive.take_one(run.id)
        await drive.report(first, _step(0, "a", "x"))
        assert first.lease is not None
        await drive.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[first.lease.id]))
        again = await drive.take_one(run.id)
        assert again.lease is not None
        assert again.lease.id != first.lease.id
        assert again.lease.attempt > first.lease.attempt
        assert [(e.index, e.name) for e in again.journal] == [(0, "a")]
        with pytest.raises(LeaseLost):
            await drive.report(first, _step(1, "b", "y"))

    async def test_an_emit_is_journaled_and_published_once(self, drive: _Driver) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        emit = Command(emit=Emit(name="progress", data=b'{"pct":50}', index=0))
        assert (await drive.report(item, emit)).outcome == ReportOutcome.CONTINUE
        # Sent again for the index that journals it: acknowledged, and nothing more published.
        assert (await drive.report(item, emit)).outcome == ReportOutcome.CONTINUE
        finished = await drive.report(item, Command(run_completed=RunCompleted(result=b"1")))
        assert finished.outcome == ReportOutcome.FINISHED
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run.id))
        assert [(e.index, e.kind, e.name, json.loads(e.output)) for e in journal.entries] == [
            (0, EntryKind.EMIT, "progress", {"pct": 50})
        ]
        events = await drive.events(run.id)
        custom = [(e.name, json.loads(e.data)) for e in events if e.type == EventType.CUSTOM]
        assert custom == [("progress", {"pct": 50})]

    async def test_renewal_names_the_leases_that_are_gone(self, drive: _Driver) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        assert item.lease is not None
        renewed = await drive.dispatcher.renew_leases(
            RenewLeasesRequest(lease_ids=[item.lease.id, "gone"])
        )
        assert list(renewed.lost) == ["gone"]

    async def test_a_signal_wait_suspends_and_the_signal_resumes_it(self, drive: _Driver) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        wait = Command(wait_signal=WaitSignal(index=0, name="go"))
        assert (await drive.report(item, wait)).outcome == ReportOutcome.SUSPENDED
        assert (await drive.run(run.id)).status == RunStatus.SUSPENDED
        answer = await drive.backend.signal_run(
            SignalRunRequest(run_id=run.id, name="go", payload=b'{"n":1}')
        )
        assert answer.delivered
        resumed = await drive.take_one(run.id)
        [entry] = resumed.journal
        assert (entry.name, entry.pending, json.loads(entry.output)) == ("go", False, {"n": 1})

    async def test_a_step_that_fails_for_good_is_journaled_with_its_error(
        self, drive: _Driver
    ) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        error = ErrorInfo(type="ValueError", message="bad card", retryable=False)
        failed = Command(step_failed=StepFailed(index=0, name="charge", attempt=1, error=error))
        assert (await drive.report(item, failed)).outcome == ReportOutcome.STEP_FAILED
        journal = await drive.backend.get_journal(GetJournalRequest(run_id=run.id))
        [entry] = journal.entries
        assert entry.error is not None
        assert (entry.name, entry.error.type, entry.error.message) == (
            "charge",
            "ValueError",
            "bad card",
        )

    async def test_cancelling_a_running_run_is_told_through_renewal(self, drive: _Driver) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        assert item.lease is not None
        await drive.report(item, _step(0, "a", 1))
        requested = await drive.backend.cancel_run(CancelRunRequest(run_id=run.id))
        assert requested.cancel_requested
        assert requested.status not in FINAL_STATUSES
        renewed = await drive.dispatcher.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))
        assert list(renewed.cancel_requested) == [item.lease.id]

    async def test_a_run_keeps_the_build_that_first_reported_for_it(self, drive: _Driver) -> None:
        """A run's build is its first reporter's: taking it records nothing (a take costs no
        durable write), so a run given back before any report has no build yet."""
        await drive.register_build(BUILD_A)
        await drive.register_build(BUILD_B)
        run = await drive.start()
        assert (await drive.run(run.id)).build_id == ""
        item = await drive.take_one(run.id, build_id=BUILD_A)
        assert (await drive.run(run.id)).build_id == BUILD_A  # shown: its worker's, while running
        await drive.release(item)
        assert (await drive.run(run.id)).build_id == ""
        item = await drive.take_one(run.id, build_id=BUILD_A)
        await drive.report(item, _step(0, "a", 1))
        await drive.release(item)
        assert (await drive.run(run.id)).build_id == BUILD_A
        item = await drive.take_one(run.id, build_id=BUILD_B)  # auto-upgrade: any build takes it
        await drive.report(item, _step(1, "b", 2))
        assert (await drive.run(run.id)).build_id == BUILD_A

    async def test_a_pinned_run_is_given_only_to_its_build_until_moved(
        self, drive: _Driver
    ) -> None:
        await drive.register_build(BUILD_A, versioning=VersioningMode.PINNED)
        await drive.register_build(BUILD_B, versioning=VersioningMode.PINNED)
        run = await drive.start()
        await drive.release(await drive.take_one(run.id, build_id=BUILD_A))  # no report: no build
        item = await drive.take_one(run.id, build_id=BUILD_B)
        await drive.report(item, _step(0, "a", 1))  # B's first report gives the run build B
        await drive.release(item)
        assert await drive.take(wait_ms=SHORT_MS, build_id=BUILD_A) == []
        await drive.release(await drive.take_one(run.id, build_id=BUILD_B))
        await drive.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_A))
        assert await drive.take(wait_ms=SHORT_MS, build_id=BUILD_B) == []
        item = await drive.take_one(run.id, build_id=BUILD_A)
        done = await drive.report(item, Command(run_completed=RunCompleted(result=b"1")))
        assert done.outcome == ReportOutcome.FINISHED
        assert (await drive.run(run.id)).build_id == BUILD_A

    async def test_a_patch_marker_is_journaled_once(self, drive: _Driver) -> None:
        run = await drive.start()
        item = await drive.take_one(run.id)
        patch = Command(patched=Patched(index=0, change_id="send-receipt"))
        assert (await drive.report(item, patch)).outcome == ReportOutcome.CONTINUE
        assert (await drive.report(item, patch)).outcome == ReportOutcome.CONTINUE  # a no-op
        await drive.report(item, _step(1, "send_receipt", "sent"))
        assert await drive.journal(run.id) == [
            (0, EntryKind.PATCH, "send-receipt"),
            (1, EntryKind.STEP, "send_receipt"),
        ]
        await drive.release(item)
        again = await drive.take_one(run.id)
        assert [(e.index, e.kind, e.name) for e in again.journal] == [
            (0, EntryKind.PATCH, "send-receipt"),
            (1, EntryKind.STEP, "send_receipt"),
        ]

    async def test_a_blocked_run_is_held_not_final_until_retried(self, drive: _Driver) -> None:
        await drive.register_build(BUILD_A)
        run = await drive.start()
        item = await drive.take_one(run.id, build_id=BUILD_A)
        ended = await drive.block(item)
        assert ended.outcome == ReportOutcome.FINISHED  # the attempt, not the run
        blocked = await drive.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=SHORT_MS))
        assert blocked.status == RunStatus.BLOCKED
        assert blocked.error is not None
        assert (blocked.error.type, blocked.blocked_build_id) == ("NonDeterminismError", BUILD_A)
        events = await drive.events_after(run.id, 0, blocked.last_event_seq)
        assert events[-1].type == EventType.RUN_BLOCKED
        assert await drive.take(wait_ms=SHORT_MS) == []
        retried = await drive.backend.retry_run(RetryRunRequest(run_id=run.id))
        assert (retried.status, retried.retries, retried.blocked_build_id) == (
            RunStatus.PENDING,
            1,
            "",
        )
        [event] = await drive.events_after(run.id, blocked.last_event_seq, 1)
        assert (event.type, json.loads(event.data)["from_index"]) == (EventType.RUN_RETRIED, 1)
        again = await drive.take_one(run.id)
        assert [(e.index, e.name) for e in again.journal] == [(0, "greet")]

    async def test_a_blocked_run_resumes_when_another_build_registers(self, drive: _Driver) -> None:
        await drive.register_build(BUILD_A)
        run = await drive.start()
        await drive.block(await drive.take_one(run.id, build_id=BUILD_A))
        await drive.register_build(BUILD_A)  # the same code again: nothing to resume
        blocked = await drive.run(run.id)
        assert blocked.status == RunStatus.BLOCKED
        await drive.register_build(BUILD_B)
        resumed = await drive.run(run.id)
        assert (resumed.status, resumed.retries) == (RunStatus.PENDING, 1)
        [event] = await drive.events_after(run.id, blocked.last_event_seq, 1)
        assert (event.type, json.loads(event.data)["automatic"]) == (EventType.RUN_RETRIED, True)
        item = await drive.take_one(run.id, build_id=BUILD_B)
        done = await drive.report(item, Command(run_completed=RunCompleted(result=b"1")))
        assert done.outcome == ReportOutcome.FINISHED


class Workers(Protocol):
    """Workers coming and going at the coordinator behind a ``WorkerRegistry`` under test. Each
    call returns once the registry shows its effect."""

    async def connect(
        self,
        worker_id: str,
        functions: Sequence[str],
        max_concurrency: int,
        sdk_version: str,
        build_id: str = "",
    ) -> None:
        """The worker registers (again: a new session replaces its old one), of ``build_id``
        (none: an SDK from before builds)."""
        ...

    async def dispatch(self, worker_id: str, function: str) -> str:
        """A new run of ``function`` is dispatched to the worker; its id."""
        ...

    async def finish(self, worker_id: str, run_id: str) -> None:
        """The worker completes the run: its slot is free."""
        ...

    async def drain(self, worker_id: str) -> None:
        """The worker asks for no more work."""
        ...

    async def disconnect(self, worker_id: str) -> None:
        """The worker's connection ends."""
        ...


@dataclasses.dataclass
class WorkerRegistrySubject:
    """The implementation under test: the registry as the gateway sees it, and the workers of
    the coordinator behind it."""

    registry: WorkerRegistry
    workers: Workers


class WorkerRegistryContract:
    """What the gateway relies on when it lists a coordinator's workers, whatever carries it."""

    pytestmark = pytest.mark.asyncio

    @staticmethod
    async def _list(subject: WorkerRegistrySubject, max_runs: int = 0) -> ListWorkersResponse:
        return await subject.registry.list_workers(ListWorkersRequest(max_runs=max_runs))

    async def _only(self, subject: WorkerRegistrySubject, max_runs: int = 0) -> WorkerInfo:
        [worker] = (await self._list(subject, max_runs)).workers
        return worker

    async def test_no_worker_is_an_empty_list_naming_the_coordinator(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        answer = await self._list(worker_registry)
        assert list(answer.workers) == []
        assert answer.coordinator

    async def test_a_connected_worker_is_listed_with_its_functions_and_capacity(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        before = now_ms()
        await worker_registry.workers.connect("w-1", [FUNCTION, OTHER], 3, "9.9.9")
        answer = await self._list(worker_registry)
        [worker] = answer.workers
        assert (worker.worker_id, worker.sdk_version, sorted(worker.functions)) == (
            "w-1",
            "9.9.9",
            sorted([FUNCTION, OTHER]),
        )
        assert (worker.max_concurrency, worker.in_flight, worker.free_slots) == (3, 0, 3)
        assert list(worker.runs) == []
        assert worker.session_id
        assert not worker.draining
        assert worker.coordinator == answer.coordinator
        assert before - 1 <= worker.connected_at_ms <= now_ms() + 1
        assert worker.last_heartbeat_at_ms >= worker.connected_at_ms

    async def test_a_worker_is_listed_with_the_build_it_registered_with(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        await worker_registry.workers.connect("w-1", [FUNCTION], 1, "", build_id="b-1")
        await worker_registry.workers.connect("w-2", [FUNCTION], 1, "")  # an SDK before builds
        answer = await self._list(worker_registry)
        assert [(w.worker_id, w.build_id) for w in answer.workers] == [("w-1", "b-1"), ("w-2", "")]

    async def test_workers_are_listed_in_worker_id_order(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        for worker_id in ("w-b", "w-c", "w-a"):
            await worker_registry.workers.connect(worker_id, [FUNCTION], 1, "")
        answer = await self._list(worker_registry)
        assert [worker.worker_id for worker in answer.workers] == ["w-a", "w-b", "w-c"]

    async def test_a_run_in_flight_takes_a_slot_until_it_finishes(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        workers = worker_registry.workers
        await workers.connect("w-1", [FUNCTION, OTHER], 2, "")
        before = now_ms()
        run_id = await workers.dispatch("w-1", OTHER)
        worker = await self._only(worker_registry)
        assert (worker.in_flight, worker.free_slots) == (1, 1)
        [run] = worker.runs
        assert (run.run_id, run.function) == (run_id, OTHER)
        assert before - 1 <= run.since_ms <= now_ms() + 1
        assert run.attempt >= 1
        await workers.finish("w-1", run_id)
        worker = await self._only(worker_registry)
        assert (worker.in_flight, worker.free_slots, list(worker.runs)) == (0, 2, [])

    async def test_runs_are_listed_oldest_first_at_most_max_runs_of_them(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        workers = worker_registry.workers
        await workers.connect("w-1", [FUNCTION], 5, "")
        ids = [await workers.dispatch("w-1", FUNCTION) for _ in range(3)]
        every = await self._only(worker_registry)
        assert [run.run_id for run in every.runs] == ids
        bounded = await self._only(worker_registry, max_runs=2)
        assert [run.run_id for run in bounded.runs] == ids[:2]
        assert (bounded.in_flight, bounded.free_slots) == (3, 2)  # the count is not bounded

    async def test_a_draining_worker_has_no_free_slot(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        await worker_registry.workers.connect("w-1", [FUNCTION], 4, "")
        await worker_registry.workers.drain("w-1")
        worker = await self._only(worker_registry)
        assert (worker.draining, worker.free_slots) == (True, 0)

    async def test_a_worker_that_left_is_not_listed(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        await worker_registry.workers.connect("w-1", [FUNCTION], 1, "")
        await worker_registry.workers.connect("w-2", [FUNCTION], 1, "")
        await worker_registry.workers.disconnect("w-1")
        answer = await self._list(worker_registry)
        assert [worker.worker_id for worker in answer.workers] == ["w-2"]

    async def test_a_worker_registering_again_is_listed_once_with_its_new_session(
        self, worker_registry: WorkerRegistrySubject
    ) -> None:
        await worker_registry.workers.connect("w-1", [FUNCTION], 1, "")
        first = await self._only(worker_registry)
        await worker_registry.workers.connect("w-1", [FUNCTION, OTHER], 2, "")
        again = await self._only(worker_registry)
        assert again.session_id != first.session_id
        assert (again.max_concurrency, sorted(again.functions)) == (2, sorted([FUNCTION, OTHER]))
