"""Backend: starting, reading, listing, waiting for and cancelling runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trine_core import (
    Backend,
    Dispatcher,
    PayloadTooLarge,
    RunFinished,
    RunNotFound,
    UnknownFunction,
)
from trine_core.errors import IdempotencyConflict
from trine_engine import ulid
from trine_engine.storage import Store
from trine_engine.storage.keys import IDEM
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetJournalRequest,
    GetRunRequest,
    ListFunctionsRequest,
    ListRunsRequest,
    RunStatus,
    StartRunRequest,
    StartRunResponse,
    SubscribeRequest,
    WaitRunRequest,
)

Harness = Any  # the conftest harness (tests cannot import conftest under importlib mode)


def test_the_engine_serves_each_contract_with_its_own_object(h: Harness) -> None:
    assert isinstance(h.backend, Backend)
    assert isinstance(h.dispatcher, Dispatcher)
    assert not isinstance(h.backend, Dispatcher)
    assert not isinstance(h.dispatcher, Backend)


async def test_start_then_get(h: Harness) -> None:
    await h.register()
    run = await h.start(data=b'{"who":"ada"}')
    assert len(run.id) == 26
    assert set(run.id) <= set(ulid.ALPHABET)
    assert run.status == RunStatus.PENDING
    assert run.input == b'{"who":"ada"}'
    assert run.created_at_ms > 0
    assert run.last_event_seq == 1
    got = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert got.id == run.id
    assert got.function == "greet"
    assert got.status == RunStatus.PENDING
    assert [e.type for e in h.inspect(run.id).events] == ["run.started"]


async def test_empty_input_means_null(h: Harness) -> None:
    await h.register()
    run = await h.start(data=b"")
    assert run.input == b"null"


async def test_unknown_run(h: Harness) -> None:
    with pytest.raises(RunNotFound):
        await h.backend.get_run(GetRunRequest(run_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))
    with pytest.raises(RunNotFound):
        await h.backend.get_journal(GetJournalRequest(run_id="nope"))
    with pytest.raises(RunNotFound):
        await h.backend.cancel_run(CancelRunRequest(run_id=""))


async def test_unknown_function_lists_the_known_ones(h: Harness) -> None:
    with pytest.raises(UnknownFunction, match="none registered yet") as empty:
        await h.start("greet")
    assert empty.value.details["known"] == []
    await h.register("b_fn", "a_fn")
    with pytest.raises(UnknownFunction) as info:
        await h.start("greet")
    assert info.value.details["known"] == ["a_fn", "b_fn"]
    assert "a_fn, b_fn" in info.value.message
    listed = await h.backend.list_functions(ListFunctionsRequest())
    assert [f.name for f in listed.functions] == ["a_fn", "b_fn"]


async def test_input_over_the_payload_limit_is_refused(h: Harness) -> None:
    await h.register()
    limit = h.config.max_payload_bytes
    with pytest.raises(PayloadTooLarge) as info:
        await h.start(data=b'"' + b"x" * limit + b'"')
    assert info.value.details["limit"] == limit
    assert (await h.backend.list_runs(ListRunsRequest())).runs == []
    await h.start(data=b'"' + b"x" * (limit - 2) + b'"')  # exactly the limit is fine


async def test_idempotency_key_returns_the_earlier_run(h: Harness) -> None:
    await h.register()
    request = StartRunRequest(function="greet", input=b"1", idempotency_key="order-7")
    # Two concurrent starts with one key: the second sees the first before it is durable.
    first, second = await asyncio.gather(h.backend.start_run(request), h.backend.start_run(request))
    assert first.created
    assert not second.created
    assert first.run.id == second.run.id
    again = await h.backend.start_run(request)
    assert not again.created
    assert again.run.id == first.run.id
    other = await h.backend.start_run(
        StartRunRequest(function="greet", input=b"1", idempotency_key="order-8")
    )
    assert other.created
    assert other.run.id != first.run.id
    await h.reopen()  # keys are durable
    after = await h.backend.start_run(request)
    assert not after.created
    assert after.run.id == first.run.id


async def test_an_idempotency_key_remembers_its_request(h: Harness) -> None:
    """The key's row keeps the request's digest, durably: after a reopen (the row read from
    RocksDB) another request with the key is still a conflict; concurrent conflicting starts
    make one run."""
    await h.register()
    request = StartRunRequest(function="greet", input=b"1", idempotency_key="order-9")
    other = StartRunRequest(function="greet", input=b"2", idempotency_key="order-9")
    first, second = await asyncio.gather(
        h.backend.start_run(request), h.backend.start_run(other), return_exceptions=True
    )
    assert isinstance(first, StartRunResponse)
    assert first.created
    assert isinstance(second, IdempotencyConflict)
    await h.reopen()
    with pytest.raises(IdempotencyConflict, match="another input"):
        await h.backend.start_run(other)
    assert len((await h.backend.list_runs(ListRunsRequest())).runs) == 1


async def test_an_idempotency_key_kept_before_digests_matches_any_request(h: Harness) -> None:
    """A row of an older engine holds the run id alone: the key returns its run, whatever the
    request (no storage-format break)."""
    await h.register()
    request = StartRunRequest(function="greet", input=b"1", idempotency_key="old-key")
    first = await h.backend.start_run(request)
    await h.close()
    store = Store.open(h.config.data_dir)
    try:
        batch = store.new_batch()
        store.put(batch, IDEM, b"old-key", first.run.id.encode())  # as written before
        store.write(batch)
    finally:
        store.close()
    await h.open()
    other = StartRunRequest(function="greet", input=b"2", idempotency_key="old-key")
    again = await h.backend.start_run(other)
    assert not again.created
    assert again.run.id == first.run.id


async def test_ids_sort_by_creation(h: Harness) -> None:
    await h.register()
    ids = [(await h.start()).id for _ in range(20)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 20


async def test_list_filters_and_pages(h: Harness) -> None:
    await h.register("greet", "other")
    greets = [(await h.start("greet")).id for _ in range(5)]
    others = [(await h.start("other")).id for _ in range(3)]
    item = await h.take_one()  # the first greet is running now
    await h.report(item, h.finish())  # ... and completed
    running = await h.take_one()  # the second greet is running

    everything = await h.backend.list_runs(ListRunsRequest())
    assert [r.id for r in everything.runs] == sorted(greets + others)
    assert everything.next_page_token == ""

    pages: list[str] = []
    token = ""
    while True:
        page = await h.backend.list_runs(ListRunsRequest(limit=3, page_token=token))
        pages.append(",".join(r.id for r in page.runs))
        assert len(page.runs) <= 3
        token = page.next_page_token
        if not token:
            break
    assert ",".join(pages).split(",") == sorted(greets + others)
    assert len(pages) == 3

    only_other = await h.backend.list_runs(ListRunsRequest(function="other"))
    assert [r.id for r in only_other.runs] == others

    completed = await h.backend.list_runs(ListRunsRequest(status=RunStatus.COMPLETED))
    assert [r.id for r in completed.runs] == [greets[0]]
    assert completed.runs[0].result == b'"done"'

    run_list = await h.backend.list_runs(ListRunsRequest(status=RunStatus.RUNNING))
    assert [r.id for r in run_list.runs] == [running.run.id]
    assert run_list.runs[0].worker_id == "w1"

    pending = await h.backend.list_runs(ListRunsRequest(status=RunStatus.PENDING, limit=2))
    assert [r.id for r in pending.runs] == greets[2:4]
    assert pending.next_page_token == greets[3]
    rest = await h.backend.list_runs(
        ListRunsRequest(status=RunStatus.PENDING, page_token=pending.next_page_token)
    )
    assert [r.id for r in rest.runs] == greets[4:] + others
    assert rest.next_page_token == ""

    pending_greets = await h.backend.list_runs(
        ListRunsRequest(status=RunStatus.PENDING, function="greet")
    )
    assert [r.id for r in pending_greets.runs] == greets[2:]

    # Listings of every status show the running overlay too.
    statuses = {r.id: r.status for r in everything.runs}
    assert statuses[running.run.id] == RunStatus.RUNNING
    assert statuses[greets[0]] == RunStatus.COMPLETED
    assert statuses[greets[2]] == RunStatus.PENDING


async def test_list_limit_is_capped(h: Harness) -> None:
    await h.register()
    for _ in range(3):
        await h.start()
    page = await h.backend.list_runs(ListRunsRequest(limit=1_000_000))
    assert len(page.runs) == 3
    assert page.next_page_token == ""


async def test_wait_run_times_out_then_sees_the_final_state(h: Harness) -> None:
    await h.register()
    run = await h.start()
    timed_out = await h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=20))
    assert timed_out.status == RunStatus.PENDING

    waiter = asyncio.create_task(h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=10_000)))
    item = await h.take_one()
    await h.report(item, h.finish(b"42"))
    done = await waiter
    assert done.status == RunStatus.COMPLETED
    assert done.result == b"42"
    # Already final: answers at once.
    assert (await h.backend.wait_run(WaitRunRequest(run_id=run.id))).status == RunStatus.COMPLETED


async def test_cancel_pending_run(h: Harness) -> None:
    await h.register()
    run = await h.start()
    cancelled = await h.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="not needed"))
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.error.type == "Cancelled"
    assert cancelled.error.message == "not needed"
    events = await h.events(run.id)
    assert [e.type for e in events] == ["run.started", "run.cancelled"]
    assert events[-1].data == b'{"type":"Cancelled","message":"not needed"}'
    assert await h.take() == []  # never dispatched
    with pytest.raises(RunFinished):
        await h.backend.cancel_run(CancelRunRequest(run_id=run.id))


async def test_cancel_finished_run_is_refused(h: Harness) -> None:
    await h.register()
    run = await h.start()
    await h.report(await h.take_one(), h.finish())
    with pytest.raises(RunFinished, match="already completed") as info:
        await h.backend.cancel_run(CancelRunRequest(run_id=run.id))
    assert info.value.details["status"] == "completed"


async def test_subscribe_backlog_then_live_without_gap_or_duplicate(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.started(0))  # seq 2
    await h.report(item, h.completed(0))  # seq 3

    received: list[int] = []
    first_two = asyncio.Event()

    async def follow() -> None:
        async for event in h.backend.subscribe(SubscribeRequest(run_id=run.id, after_seq=1)):
            received.append(event.seq)
            if len(received) == 2:
                first_two.set()

    follower = asyncio.create_task(follow())
    await first_two.wait()  # the backlog (2, 3) arrived; everything after is live
    assert received == [2, 3]
    await h.report(item, h.started(1))  # seq 4
    await h.report(item, h.emit("a", b"1"), h.emit("b", b"2"))  # seq 5, 6
    await h.report(item, h.finish())  # seq 7, final: the iterator ends by itself
    await asyncio.wait_for(follower, 5)
    assert received == [2, 3, 4, 5, 6, 7]

    # Resuming from any cursor gives exactly the rest; at the end, nothing.
    assert [e.seq for e in await h.events(run.id, after_seq=5)] == [6, 7]
    assert await h.events(run.id, after_seq=7) == []


async def test_subscribers_see_only_durable_events(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    stream = h.backend.subscribe(SubscribeRequest(run_id=run.id, after_seq=1))
    nxt = asyncio.ensure_future(stream.__anext__())
    report = asyncio.ensure_future(h.report(item, h.started(0)))
    await asyncio.sleep(0)  # the report is accepted (in memory) but its batch is not written
    snapshot = h.inspect(run.id)
    assert len(snapshot.events) == 2
    assert snapshot.durable_seq == 1
    assert not nxt.done()
    await report
    assert (await nxt).seq == 2
    await stream.aclose()
