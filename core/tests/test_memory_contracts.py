"""``MemoryEngine`` against the contract suites (the in-memory engine other plugins' tests use in
place of the real one must keep the contracts the real one keeps), and the engine behaviour it
models beyond them (docs/internals.md, "Runs"), which those tests will lean on."""

from __future__ import annotations

import asyncio
import json

import pytest

from trine_core import InvalidArgument, PayloadTooLarge, Unavailable
from trine_core.testing.contracts import BackendContract, ContractSubject, DispatcherContract
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    CancelRunRequest,
    Command,
    Emit,
    EntryKind,
    ErrorInfo,
    FunctionSpec,
    GetJournalRequest,
    GetRunRequest,
    JournalEntry,
    ListBuildsRequest,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
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
    SubscribeRequest,
    TakeWorkRequest,
    VersioningMode,
    WaitSignal,
    WorkItem,
)
from trine_proto.vocabulary import ErrorType, EventType

MAX_PAYLOAD = 4096
T0 = 1_700_000_000_000


class TestMemoryEngine(BackendContract, DispatcherContract):
    @pytest.fixture
    def subject(self) -> ContractSubject:
        memory = MemoryEngine(max_payload_bytes=MAX_PAYLOAD)
        return ContractSubject(memory.backend, memory.dispatcher, MAX_PAYLOAD)


@pytest.fixture
async def memory() -> MemoryEngine:
    memory = MemoryEngine(MAX_PAYLOAD, clock=lambda: T0)
    functions = [FunctionSpec(name="parent"), FunctionSpec(name="child", timeout_ms=5_000)]
    await memory.dispatcher.register_functions(RegisterFunctionsRequest("w1", functions))
    return memory


async def start(memory: MemoryEngine, function: str = "parent") -> Run:
    answer = await memory.backend.start_run(StartRunRequest(function=function, input=b"{}"))
    assert answer.run is not None
    return answer.run


async def take(memory: MemoryEngine, function: str = "parent", max_items: int = 10) -> WorkItem:
    request = TakeWorkRequest(worker_id="w1", functions=[function], max_items=max_items)
    [item] = (await memory.dispatcher.take_work(request)).items
    return item


async def report(memory: MemoryEngine, item: WorkItem, *commands: Command) -> ReportResponse:
    assert item.run is not None
    assert item.lease is not None
    request = ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=list(commands))
    return await memory.dispatcher.report(request)


async def get(memory: MemoryEngine, run_id: str) -> Run:
    return await memory.backend.get_run(GetRunRequest(run_id=run_id))


async def journal(memory: MemoryEngine, run_id: str) -> list[tuple[int, str, bool, str]]:
    """(index, name, pending, output or error type) per entry."""
    answer = await memory.backend.get_journal(GetJournalRequest(run_id=run_id))
    return [
        (e.index, e.name, e.pending, e.error.type if e.error else e.output.decode())
        for e in answer.entries
    ]


def step_failed(attempt: int) -> Command:
    error = ErrorInfo(type="IOError", message="flaky", retryable=True)
    return Command(step_failed=StepFailed(index=0, name="charge", attempt=attempt, error=error))


async def test_a_leased_run_shows_running_with_its_worker_and_keeps_its_deadline(
    memory: MemoryEngine,
) -> None:
    run = await start(memory, "child")
    assert run.deadline_ms == T0 + 5_000  # the function's timeout
    await take(memory, "child")
    leased = await get(memory, run.id)
    assert (leased.status, leased.worker_id, leased.attempt) == (RunStatus.RUNNING, "w1", 1)


async def test_a_retryable_failure_is_retried_until_its_attempts_run_out(
    memory: MemoryEngine,
) -> None:
    run = await start(memory)
    first = await report(memory, await take(memory), step_failed(1))
    assert (first.outcome, first.retry_at_ms) == (ReportOutcome.RETRY_SCHEDULED, T0 + 100)
    waiting = await get(memory, run.id)
    assert (waiting.status, waiting.not_before_ms) == (RunStatus.PENDING, T0 + 100)
    second = await take(memory)
    assert second.lease is not None
    assert (second.lease.attempt, dict(second.step_attempts)) == (2, {0: 1})
    await report(memory, second, step_failed(2))
    last = await report(memory, await take(memory), step_failed(3))  # 3 attempts by default
    assert last.outcome == ReportOutcome.STEP_FAILED
    assert await journal(memory, run.id) == [(0, "charge", False, "IOError")]


async def test_a_sleep_due_now_resolves_at_once_and_a_later_one_suspends(
    memory: MemoryEngine,
) -> None:
    run = await start(memory)
    item = await take(memory)
    now = await report(memory, item, Command(sleep=Sleep(index=0, duration_ms=0)))
    assert now.outcome == ReportOutcome.CONTINUE
    assert [(e.index, e.kind, e.pending) for e in now.resolved] == [(0, EntryKind.SLEEP, False)]
    later = await report(memory, item, Command(sleep=Sleep(index=1, duration_ms=10)))
    assert later.outcome == ReportOutcome.SUSPENDED
    suspended = await get(memory, run.id)
    assert suspended.status == RunStatus.SUSPENDED
    assert [(w.index, w.kind, w.until_ms) for w in suspended.waiting] == [
        (1, EntryKind.SLEEP, T0 + 10)
    ]


async def test_kept_signals_answer_waits_oldest_first(memory: MemoryEngine) -> None:
    run = await start(memory)
    for payload in (b'"a"', b'"b"'):
        await memory.backend.signal_run(SignalRunRequest(run.id, "go", payload))
    item = await take(memory)
    waits = [Command(wait_signal=WaitSignal(index=i, name="go")) for i in (0, 1)]
    answer = await report(memory, item, *waits)
    assert answer.outcome == ReportOutcome.CONTINUE
    assert [json.loads(e.output) for e in answer.resolved] == ["a", "b"]


async def test_a_child_run_resolves_its_parents_wait_with_its_result(
    memory: MemoryEngine,
) -> None:
    parent = await start(memory)
    start_child = Command(start_child=StartChild(index=0, function="child", input=b"7"))
    answer = await report(memory, await take(memory), start_child)
    assert answer.outcome == ReportOutcome.SUSPENDED
    child = await take(memory, "child")
    assert child.run is not None
    assert (child.run.parent_run_id, child.run.parent_index) == (parent.id, 0)
    await report(memory, child, Command(run_completed=RunCompleted(result=b"49")))
    assert (await get(memory, parent.id)).status == RunStatus.PENDING
    resumed = await take(memory)
    assert [(e.name, e.pending, e.output) for e in resumed.journal] == [("child", False, b"49")]


async def test_a_cancelled_child_resolves_its_parents_wait_with_child_cancelled(
    memory: MemoryEngine,
) -> None:
    parent = await start(memory)
    start_child = Command(start_child=StartChild(index=0, function="child"))
    await report(memory, await take(memory), start_child)
    [entry] = (await memory.backend.get_journal(GetJournalRequest(parent.id))).entries
    await memory.backend.cancel_run(CancelRunRequest(run_id=entry.child_run_id))
    assert await journal(memory, parent.id) == [(0, "child", False, ErrorType.CHILD_CANCELLED)]


async def test_cancelling_a_suspended_run_resolves_its_waits_and_cancels_its_children(
    memory: MemoryEngine,
) -> None:
    parent = await start(memory)
    start_child = Command(start_child=StartChild(index=0, function="child"))
    await report(memory, await take(memory), start_child)
    requested = await memory.backend.cancel_run(CancelRunRequest(run_id=parent.id))
    assert requested.cancel_requested
    assert requested.status == RunStatus.PENDING  # to be replayed into its cancellation
    assert await journal(memory, parent.id) == [(0, "child", False, ErrorType.CANCELLED)]
    [entry] = (await memory.backend.get_journal(GetJournalRequest(parent.id))).entries
    assert (await get(memory, entry.child_run_id)).status == RunStatus.CANCELLED
    error = ErrorInfo(type=ErrorType.CANCELLED, message="stopped")
    ended = await report(memory, await take(memory), Command(run_failed=RunFailed(error=error)))
    assert ended.outcome == ReportOutcome.FINISHED
    assert (await get(memory, parent.id)).status == RunStatus.CANCELLED


async def test_a_refused_report_changes_nothing(memory: MemoryEngine) -> None:
    run = await start(memory)
    item = await take(memory)
    step = Command(step_completed=StepCompleted(entry=JournalEntry(index=0, name="a")))
    too_large = Command(emit=Emit(name="big", data=b"1" * (MAX_PAYLOAD + 1)))
    with pytest.raises(PayloadTooLarge):
        await report(memory, item, step, too_large)
    assert await journal(memory, run.id) == []
    assert (await get(memory, run.id)).last_event_seq == 1
    with pytest.raises(InvalidArgument):  # a gap in the journal
        await report(
            memory, item, Command(step_completed=StepCompleted(JournalEntry(index=3, name="b")))
        )
    assert (await report(memory, item, step, step)).outcome == ReportOutcome.CONTINUE
    assert await journal(memory, run.id) == [(0, "a", False, "null")]  # the repeat: a no-op


async def test_a_released_run_is_first_in_line(memory: MemoryEngine) -> None:
    first, _ = await start(memory), await start(memory)
    item = await take(memory, max_items=1)
    assert item.lease is not None
    await memory.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))
    again = await take(memory, max_items=1)
    assert again.run is not None
    assert again.run.id == first.id


async def test_the_hooks_record_calls_wait_for_them_and_fail_them(memory: MemoryEngine) -> None:
    run = await start(memory)
    assert ("start_run", StartRunRequest(function="parent", input=b"{}")) in memory.calls
    waiter = asyncio.ensure_future(memory.called("cancel_run"))
    await memory.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="test"))
    assert [request.reason for request in await waiter] == ["test"]
    memory.fail_with = Unavailable("down")
    with pytest.raises(Unavailable):
        await get(memory, run.id)
    assert memory.calls[-1] == ("get_run", GetRunRequest(run_id=run.id))
    with pytest.raises(TimeoutError):
        await memory.called("signal_run", timeout_s=0.01)


async def test_open_subscriptions_are_counted_until_closed_and_fail_with_ends_them(
    memory: MemoryEngine,
) -> None:
    run = await start(memory)
    first = memory.backend.subscribe(SubscribeRequest(run_id=run.id))
    assert (await anext(first)).type == EventType.RUN_STARTED
    second = memory.backend.subscribe(SubscribeRequest(run_id=run.id))
    assert (await anext(second)).seq == 1
    assert memory.open_subscriptions == 2
    waiting = asyncio.ensure_future(anext(second))
    closed = asyncio.ensure_future(memory.until(lambda: memory.open_subscriptions == 1))
    await first.aclose()  # type: ignore[attr-defined]
    await closed
    memory.fail_with = Unavailable("gone")  # the waiting subscription hears it at once
    with pytest.raises(Unavailable):
        await waiting
    assert memory.open_subscriptions == 0


async def test_fire_timers_fires_what_is_due_and_resumes_the_run(memory: MemoryEngine) -> None:
    now = [T0]
    memory.clock = lambda: now[0]
    run = await start(memory)
    sleep, wait = (
        Command(sleep=Sleep(index=0, duration_ms=10)),
        WaitSignal(index=1, name="go", timeout_ms=20),
    )
    await report(memory, await take(memory), sleep, Command(wait_signal=wait))
    now[0] = T0 + 10
    assert memory.fire_timers() == 1
    assert (await get(memory, run.id)).status == RunStatus.SUSPENDED  # still waits for "go"
    now[0] = T0 + 20
    assert memory.fire_timers() == 1
    assert memory.fire_timers() == 0
    assert (await get(memory, run.id)).status == RunStatus.PENDING
    assert await journal(memory, run.id) == [
        (0, "sleep", False, ""),
        (1, "go", False, ErrorType.SIGNAL_TIMEOUT),
    ]
    events = memory.backend.subscribe(SubscribeRequest(run_id=run.id, after_seq=3))
    fired = [await anext(events), await anext(events)]
    assert [(e.type, e.name) for e in fired] == [
        (EventType.TIMER_FIRED, "sleep"),
        (EventType.SIGNAL_TIMED_OUT, "go"),
    ]


async def test_a_pinned_run_shows_the_build_it_waits_for_while_none_of_it_asks_for_work(
    memory: MemoryEngine,
) -> None:
    now = [T0]
    memory.clock = lambda: now[0]
    pinned = [FunctionSpec(name="parent", versioning=VersioningMode.PINNED)]
    for build_id in ("a", "b"):
        request = RegisterFunctionsRequest(f"w-{build_id}", pinned, build_id=build_id)
        await memory.dispatcher.register_functions(request)
    run = await start(memory)
    assert (await get(memory, run.id)).waiting_for_build == ""  # no build yet: anyone takes it
    taken = await memory.dispatcher.take_work(
        TakeWorkRequest(worker_id="w-a", functions=["parent"], max_items=1, build_id="a")
    )
    [item] = taken.items
    assert item.lease is not None
    assert (await get(memory, run.id)).waiting_for_build == ""  # running
    step = JournalEntry(index=0, name="s", output=b"1", attempt=1)
    await report(memory, item, Command(step_completed=StepCompleted(step)))  # gives it build a
    await memory.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))
    assert (await get(memory, run.id)).waiting_for_build == ""  # a asked for work just now
    now[0] = T0 + 10_001
    await memory.dispatcher.take_work(
        TakeWorkRequest(worker_id="w-b", functions=["parent"], max_items=1, build_id="b")
    )
    assert (await get(memory, run.id)).waiting_for_build == "a"
    builds = (await memory.backend.list_builds(ListBuildsRequest())).builds
    assert [(b.build_id, b.open_runs, b.connected, b.last_seen_ms) for b in builds] == [
        ("a", 1, False, T0),
        ("b", 0, True, T0 + 10_001),
    ]


async def test_a_retried_run_gets_a_new_deadline_of_its_timeout(memory: MemoryEngine) -> None:
    now = [T0]
    memory.clock = lambda: now[0]
    run = await start(memory, "child")  # its function's timeout: 5 s
    error = ErrorInfo(type="RunTimeout", message="too slow")
    await report(memory, await take(memory, "child"), Command(run_failed=RunFailed(error=error)))
    now[0] = T0 + 60_000
    retried = await memory.backend.retry_run(RetryRunRequest(run_id=run.id))
    assert (retried.status, retried.deadline_ms) == (RunStatus.PENDING, T0 + 65_000)


async def test_a_blocked_report_sent_again_under_its_lease_is_acknowledged(
    memory: MemoryEngine,
) -> None:
    run = await start(memory)
    item = await take(memory)
    blocked = Command(run_blocked=RunBlocked(error=ErrorInfo(type="TypeError", message="bug")))
    assert (await report(memory, item, blocked)).outcome == ReportOutcome.FINISHED
    first = await get(memory, run.id)
    assert (await report(memory, item, blocked)).outcome == ReportOutcome.FINISHED
    again = await get(memory, run.id)
    assert (again.status, again.last_event_seq) == (RunStatus.BLOCKED, first.last_event_seq)


async def test_a_run_being_cancelled_is_cancelled_not_blocked(memory: MemoryEngine) -> None:
    run = await start(memory)
    item = await take(memory)
    await memory.backend.cancel_run(CancelRunRequest(run_id=run.id))
    blocked = Command(run_blocked=RunBlocked(error=ErrorInfo(type="TypeError", message="bug")))
    assert (await report(memory, item, blocked)).outcome == ReportOutcome.FINISHED
    assert (await get(memory, run.id)).status == RunStatus.CANCELLED
