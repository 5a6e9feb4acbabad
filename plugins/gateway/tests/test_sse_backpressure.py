"""An event stream reads the subscription only as fast as its client consumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from trine_core import Settings
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_proto.trine.v1 import Event, GetRunRequest, Run, RunStatus, SubscribeRequest

EVENTS = 5_000
DATA = b'"' + b"x" * (32 * 1024) + b'"'  # 32 KiB each: 160 MB in all


class LongHistory:
    """A backend whose runs have a long history of large events; it counts what was read."""

    def __init__(self) -> None:
        self.memory = MemoryEngine().backend
        self.pulled = 0
        self.closed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)

    async def get_run(self, message: GetRunRequest) -> Run:
        return Run(id=message.run_id, function="f", status=RunStatus.RUNNING)

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        try:
            for seq in range(message.after_seq + 1, EVENTS + 1):
                self.pulled += 1
                yield Event(run_id=message.run_id, seq=seq, type="custom", data=DATA)
        finally:
            self.closed.set()


async def test_a_client_that_does_not_read_holds_a_bounded_number_of_events() -> None:
    backend = LongHistory()
    lifecycle = Lifecycle()
    app = create_app(backend, Settings(), lambda: True, lifecycle=lifecycle)
    server = GatewayServer(app, "127.0.0.1:0", lifecycle)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /v1/runs/r1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        # The client reads nothing more: the stream stops reading once the socket is full.
        previous = -1
        while backend.pulled != previous:
            previous = backend.pulled
            await asyncio.sleep(0.3)  # polling a counter: nothing signals "nothing more read"
        # Socket buffers (kernel, both sides, and uvicorn's) hold a few MB: ~100s of 32 KiB events.
        assert backend.pulled < EVENTS // 5, backend.pulled
        held = backend.pulled
        # Reading on resumes the stream, to the end.
        got = 0
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.startswith(b"id: "):
                got += 1
            if got == EVENTS - 1 or not line:
                break
        assert got == EVENTS - 1
        assert backend.pulled == EVENTS > held
        writer.close()
    finally:
        await server.stop()
