"""A stream the engine ends first (it is stopping) ends for the caller, as the in-process one
does: grpclib wants the client's side ended before the trailers are read, and said "Outgoing
stream was not ended" (a warning in the coordinator's log at every engine stop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from trine_core import Dispatcher
from trine_core.testing import free_port
from trine_proto.trine.v1 import (
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    Run,
    TakeWorkRequest,
    TakeWorkResponse,
    WorkItem,
)
from trine_transport_grpc import GrpcTransport


class EndsAfterOne:
    """A Dispatcher whose dispatch stream sends one response, then ends."""

    async def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        await anext(requests)
        yield TakeWorkResponse(items=[WorkItem(run=Run(id="r1"))])


async def test_a_dispatch_stream_the_engine_ends_ends_for_the_caller() -> None:
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    await server.serve(Dispatcher, EndsAfterOne(), address)  # type: ignore[arg-type]
    granting = asyncio.Event()

    async def requests() -> AsyncIterator[TakeWorkRequest]:
        yield TakeWorkRequest(worker_id="w", functions=["f"], max_items=1)
        await granting.wait()  # the coordinator would grant more later: its side stays open

    try:
        remote = await client.connect(Dispatcher, address)
        got = [r async for r in remote.take_work_stream(requests())]
        assert [item.run.id for r in got for item in r.items if item.run] == ["r1"]
    finally:
        await client.close()
        await server.close()


class Recorder:
    """A Dispatcher that says in which order it saw its dispatch stream close and a release."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.both = asyncio.Event()

    def _saw(self, what: str) -> None:
        self.seen.append(what)
        if len(self.seen) == 2:
            self.both.set()

    async def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        await anext(requests)
        yield TakeWorkResponse(items=[WorkItem(run=Run(id="r1"))])
        try:  # the engine notices a caller leaving as its requests ending (or failing)
            async for _ in requests:
                pass
        finally:
            self._saw("stream closed")

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        self._saw("released")
        return ReleaseLeasesResponse()


async def test_a_stream_left_is_closed_before_the_next_call_reaches_the_engine() -> None:
    """A coordinator whose worker is gone leaves its dispatch stream, then releases the runs
    it held: were the release first, the engine would hand them straight back to that stream."""
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    recorder = Recorder()
    await server.serve(Dispatcher, recorder, address)  # type: ignore[arg-type]
    granting = asyncio.Event()

    async def requests() -> AsyncIterator[TakeWorkRequest]:
        yield TakeWorkRequest(worker_id="w", functions=["f"], max_items=1)
        await granting.wait()

    try:
        remote = await client.connect(Dispatcher, address)
        stream = remote.take_work_stream(requests())
        assert isinstance(stream, AsyncGenerator)
        await anext(stream)
        await stream.aclose()
        await remote.release_leases(ReleaseLeasesRequest(lease_ids=["l1"]))
        async with asyncio.timeout(5):
            await recorder.both.wait()
        assert recorder.seen == ["stream closed", "released"]
    finally:
        await client.close()
        await server.close()
