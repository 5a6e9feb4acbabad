"""A session's dispatch credit and its take stream, one ``WorkerService._take`` with the engine's
side scripted (no gRPC): the engine is granted only slots the worker has, a grant is used up
once its runs are in flight (not when they come, before an await), and a take stream the
coordinator stops reading is closed at once (left open, the engine goes on leasing runs to it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from conftest import FUNCTION, Delegating

from trine_coordinator import credit
from trine_coordinator.service import WorkerService
from trine_coordinator.session import WorkerSession
from trine_coordinator.settings import LEASE_TTL_MS
from trine_core import Dispatcher, Settings, TrineError, get_logger
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    Lease,
    RenewLeasesRequest,
    RenewLeasesResponse,
    Run,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkItem,
)

LEASE_TTL_S = 30.0
LATE_S = LEASE_TTL_S * 0.6
"""A run that comes this long after its slot was granted has its lease checked before it goes
out (over half a TTL)."""


class Clock:
    """``credit``'s monotonic clock, moved by the test: a run comes late by this clock, with no
    sleep."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(credit, "time", clock)
    return clock


class Engine(Delegating):
    """The engine's side of a take stream, played by the test: what the coordinator grants is
    kept in ``granted``, what the test puts in ``responses`` is sent; a lease renewal waits for
    ``may_renew`` and answers the leases in ``expired`` lost."""

    def __init__(self, inner: Dispatcher) -> None:
        super().__init__(inner)
        self.granted: list[int] = []
        self.responses: asyncio.Queue[TakeWorkResponse] = asyncio.Queue()
        self.renewing: list[list[str]] = []
        self.may_renew = asyncio.Event()
        self.expired: set[str] = set()
        self._changed = asyncio.Event()

    async def take_work_stream(  # type: ignore[override]
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                yield await self.responses.get()
        finally:
            reader.cancel()

    async def _read(self, requests: AsyncIterator[TakeWorkRequest]) -> None:
        async for request in requests:
            self.granted.append(request.max_items)
            self._changed.set()

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        self.renewing.append(list(message.lease_ids))
        self._changed.set()
        await self.may_renew.wait()
        return RenewLeasesResponse(
            lost=[lease for lease in message.lease_ids if lease in self.expired]
        )

    async def until(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()`` holds, checked at every grant and renewal."""
        async with asyncio.timeout(5):
            while not ready():
                self._changed.clear()
                await self._changed.wait()


def item(run_id: str) -> WorkItem:
    """A work item of ``run_id``, under the lease ``lease-<run_id>``."""
    return WorkItem(run=Run(id=run_id, function=FUNCTION), lease=Lease(id=f"lease-{run_id}"))


def session(slots: int) -> WorkerSession:
    return WorkerSession(
        worker_id="w1", session_id="s1", functions=[FUNCTION], max_concurrency=slots
    )


def service(dispatcher: Dispatcher) -> WorkerService:
    settings = Settings({LEASE_TTL_MS: int(LEASE_TTL_S * 1000)})
    return WorkerService(dispatcher, settings, get_logger("coordinator"))


async def sent(worker: WorkerSession) -> str:
    """The run id of the next message the worker is sent, which must be a dispatch."""
    message = await asyncio.wait_for(worker.next_message(), 5)
    assert message is not None
    assert message.dispatch is not None, message
    assert message.dispatch.run is not None
    return message.dispatch.run.id


async def stopped(take: asyncio.Task[bool]) -> None:
    take.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await take


# -- credit --------------------------------------------------------------------------------------


async def test_a_slot_freed_while_a_late_run_is_checked_is_not_granted_twice(clock: Clock) -> None:
    """A run that came late is not in flight while its lease is checked (an await): a slot that
    frees meanwhile is granted, but not the slot that run is about to take."""
    engine = Engine(MemoryEngine().dispatcher)
    worker = session(slots=2)
    take = asyncio.create_task(service(engine)._take(worker))
    try:
        await engine.until(lambda: engine.granted == [2])
        engine.responses.put_nowait(TakeWorkResponse(items=[item("r1")]))
        assert await sent(worker) == "r1"
        clock.now += LATE_S
        engine.responses.put_nowait(TakeWorkResponse(items=[item("r2")]))
        await engine.until(lambda: engine.renewing == [["lease-r2"]])  # r2's lease is checked
        worker.finish("r1", "lease-r1")  # and a slot frees meanwhile
        await engine.until(lambda: len(engine.granted) == 2)
        # One slot is free and one on its way to r2: one more run, not two.
        assert engine.granted == [2, 1]
        engine.may_renew.set()
        assert await sent(worker) == "r2"
        assert worker.in_flight == {"r2": "lease-r2"}
    finally:
        await stopped(take)


async def test_a_late_run_whose_lease_expired_gives_its_slot_back(clock: Clock) -> None:
    """A run dropped because its lease expired on the way used up its grant (the engine sent
    it), and its slot, never taken, is granted again."""
    engine = Engine(MemoryEngine().dispatcher)
    engine.may_renew.set()
    engine.expired.add("lease-r1")
    worker = session(slots=1)
    take = asyncio.create_task(service(engine)._take(worker))
    try:
        await engine.until(lambda: engine.granted == [1])
        clock.now += LATE_S
        engine.responses.put_nowait(TakeWorkResponse(items=[item("r1")]))
        await engine.until(lambda: len(engine.granted) == 2)
        assert engine.granted == [1, 1]
        assert worker.in_flight == {}
    finally:
        await stopped(take)


# -- the take stream -----------------------------------------------------------------------------


class Stream:
    """A take stream that is not an async generator (as a transport's stream wrapper may be):
    nothing closes it when it is dropped, only ``aclose``."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[TakeWorkResponse] = asyncio.Queue()
        self.reading = asyncio.Event()
        self.closed = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> TakeWorkResponse:
        self.reading.set()
        return await self.responses.get()

    async def aclose(self) -> None:
        self.closed = True


class StreamEngine(Delegating):
    """An engine whose take stream is ``stream``."""

    def __init__(self, inner: Dispatcher) -> None:
        super().__init__(inner)
        self.stream = Stream()

    def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        return self.stream


async def test_a_take_cancelled_while_it_reads_closes_its_stream() -> None:
    """The session ended (its dispatch loop is cancelled) while its take waited for runs."""
    engine = StreamEngine(MemoryEngine().dispatcher)
    take = asyncio.create_task(service(engine)._take(session(slots=1)))
    await asyncio.wait_for(engine.stream.reading.wait(), 5)
    await stopped(take)
    assert engine.stream.closed


async def test_a_take_that_breaks_closes_its_stream() -> None:
    """The loop reading the stream raised (here: a work item without a lease)."""
    engine = StreamEngine(MemoryEngine().dispatcher)
    engine.stream.responses.put_nowait(TakeWorkResponse(items=[WorkItem(run=Run(id="r1"))]))
    with pytest.raises(TrineError, match="without a run or a lease"):
        await asyncio.wait_for(service(engine)._take(session(slots=1)), 5)
    assert engine.stream.closed
