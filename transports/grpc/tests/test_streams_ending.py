"""A stream the engine ends first (it is stopping) ends for the caller, as the in-process one
does: grpclib wants the client's side ended before the trailers are read, and said "Outgoing
stream was not ended" (a warning in the coordinator's log at every engine stop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from trine_core import Dispatcher
from trine_core.testing import free_port
from trine_proto.trine.v1 import Run, TakeWorkRequest, TakeWorkResponse, WorkItem
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
