"""take_work: FIFO per function, long-polls woken by new work, and no run lost or leased by a call
that is cancelled, woken by close, or popped while the clock stepped back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from trine_proto.trine.v1 import (
    RetryPolicy,
    TakeWorkRequest,
)

Harness = Any


async def test_take_work_long_poll_wakes_on_start(h: Harness) -> None:
    await h.register("greet", "other")
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    assert h.engine.stats().take_work_waiters == 1
    await h.start("other")  # not a function this poll asked for
    await asyncio.sleep(0)
    assert not poll.done()
    run = await h.start("greet")
    items = await asyncio.wait_for(poll, 5)
    assert [i.run.id for i in items] == [run.id]


async def test_take_work_returns_empty_after_wait(h: Harness) -> None:
    await h.register()
    assert await h.take(wait_ms=20) == []


async def test_cancelled_take_work_loses_no_run(h: Harness) -> None:
    await h.register()
    # Cancelled while waiting.
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    assert h.engine.stats().take_work_waiters == 1
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    # Cancelled after a run woke it, before it ran again.
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # one step: the poll runs until it waits
    start = asyncio.create_task(h.start())
    await asyncio.sleep(0)  # the start is appended; its batch is written on the next turn
    # Queued after that write: the write queues the run and wakes the poll, then this cancels
    # the poll before it runs again.
    asyncio.get_running_loop().call_soon(poll.cancel)
    with pytest.raises(asyncio.CancelledError):
        await poll
    run = await start
    assert h.inspect(run.id).queued  # woken, but it took nothing
    assert (await h.take_one()).run.id == run.id


async def test_take_work_max_items_and_fifo(h: Harness) -> None:
    await h.register("greet", "other")
    greets = [(await h.start("greet")).id for _ in range(3)]
    others = [(await h.start("other")).id for _ in range(2)]
    items = await h.take(functions=("greet", "other"), max_items=4)
    assert [i.run.id for i in items] == [greets[0], others[0], greets[1], others[1]]
    assert [i.run.id for i in await h.take(max_items=10)] == [greets[2]]
    assert len({i.lease.id for i in items}) == 4


async def test_a_take_work_woken_by_close_leases_nothing(h: Harness) -> None:
    # close() writes the gathered batch, which queues a just-started run and wakes the long-polls:
    # they used to lease it on the stopped engine, so a worker ran a step it could never report.
    await h.register()
    poll = asyncio.create_task(h.take(wait_ms=10_000))
    await asyncio.sleep(0)  # the poll waits
    start = asyncio.create_task(h.start())
    await asyncio.sleep(0)  # the start is appended, not yet written
    await h.close()
    assert await asyncio.wait_for(poll, 5) == []
    await start


async def test_a_clock_step_back_does_not_drop_a_queued_run(h: Harness) -> None:
    # A run queued once its backoff ended, then popped while the wall clock had stepped back, was
    # dropped from the queue with no timer: it stayed pending until the next restart.
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=20))
    run = await h.start()
    await h.report(await h.take_one(), h.failed(0))
    h.clock.advance(20)
    await h.until(lambda: h.inspect(run.id).queued)  # the backoff ended: queued again
    h.clock.advance(-1_000)  # the wall clock steps back a second
    assert await h.take() == []  # not ready by this clock
    h.clock.advance(1_000)
    assert (await h.take_one(wait_ms=2_000)).run.id == run.id


async def _credits(queue: asyncio.Queue[TakeWorkRequest | None]) -> AsyncIterator[TakeWorkRequest]:
    while (request := await queue.get()) is not None:
        yield request


async def test_work_streams_share_the_runs(h: Harness) -> None:
    """Two work streams with room for every run (two coordinators' workers) each get some:
    a stream woken for a run another took keeps its place ahead of it."""
    await h.register()
    got: dict[str, list[str]] = {"a": [], "b": []}

    streams = _Streams(h, got)
    await h.until(lambda: h.engine.stats().take_work_waiters == 2)
    for n in range(10):
        await h.start()
        await h.until(lambda n=n: sum(len(ids) for ids in got.values()) > n)
    assert len(got["a"]) >= 3, got
    assert len(got["b"]) >= 3, got
    await streams.end()


async def test_three_waiting_work_streams_take_runs_in_turn(h: Harness) -> None:
    """Runs made ready one at a time go to the waiting streams in turn: a stream woken for a
    run another took keeps its turn, and the one that took it waits behind the others."""
    await h.register()
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    streams = _Streams(h, got)
    await h.until(lambda: h.engine.stats().take_work_waiters == 3)
    for n in range(12):
        await h.start()
        await h.until(lambda n=n: sum(len(ids) for ids in got.values()) > n)
        await h.until(lambda: h.engine.stats().take_work_waiters == 3)
    assert sorted(len(ids) for ids in got.values()) == [4, 4, 4], got
    await streams.end()


async def test_a_work_stream_whose_requests_ended_leases_nothing(h: Harness) -> None:
    """The requests' end (the coordinator leaving) ends the stream before it leases again,
    though it has credit left: nobody would read a run leased now."""
    await h.register()
    queue: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
    queue.put_nowait(TakeWorkRequest(worker_id="w", functions=["greet"], max_items=10))
    stream = h.engine.dispatcher.take_work_stream(_credits(queue))
    first = asyncio.ensure_future(anext(stream))
    await h.until(lambda: h.engine.stats().take_work_waiters == 1)
    run = await h.start()
    assert [item.run.id for item in (await first).items] == [run.id]
    queue.put_nowait(None)  # the requests end, with 9 credits left
    waiting = await h.start()
    await h.until(lambda: h.inspect(waiting.id).queued)
    async with asyncio.timeout(5):
        assert [response async for response in stream] == []
    assert h.inspect(waiting.id).queued
    assert h.inspect(waiting.id).lease is None


class _Streams:
    """One work stream per name of ``got``, each with credit for every run, adding the ids of
    the runs it is sent to its list."""

    def __init__(self, h: Harness, got: dict[str, list[str]]) -> None:
        self._queues: list[asyncio.Queue[TakeWorkRequest | None]] = []
        self._tasks = [asyncio.create_task(self._consume(h, name, got[name])) for name in got]

    async def _consume(self, h: Harness, name: str, ids: list[str]) -> None:
        queue: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
        self._queues.append(queue)
        queue.put_nowait(TakeWorkRequest(worker_id=name, functions=["greet"], max_items=100))
        async for response in h.engine.dispatcher.take_work_stream(_credits(queue)):
            ids += [item.run.id for item in response.items if item.run is not None]

    async def end(self) -> None:
        for queue in self._queues:
            queue.put_nowait(None)
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks)
