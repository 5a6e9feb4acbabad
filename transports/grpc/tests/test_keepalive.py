"""A connection to an engine that stops answering without a reset (its host gone, a network
partition) is found dead by HTTP/2 pings: the dispatch stream on it fails ``unavailable``
instead of waiting for TCP to give up, minutes later."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from grpclib.server import Server

from trine_core import Dispatcher, TrineError
from trine_core.testing import free_port
from trine_core.testing.memory import MemoryEngine
from trine_proto.limits import BoundedCodec
from trine_proto.trine.v1 import (
    FunctionSpec,
    RegisterFunctionsRequest,
    StartRunRequest,
    TakeWorkRequest,
)
from trine_transport_grpc import GrpcTransport, client
from trine_transport_grpc.server import Served, ServedBackend, ServedDispatcher


class Blackhole:
    """A TCP proxy that forwards both ways until ``freeze``, then swallows everything while
    keeping both connections open: a peer that went silent, not one that closed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for task in (self._pump(reader, up_writer), self._pump(up_reader, writer)):
            running = asyncio.create_task(task)
            self._tasks.add(running)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.frozen:
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def engine_port() -> AsyncIterator[tuple[int, MemoryEngine]]:
    memory = MemoryEngine()
    served = Served()
    served.backend, served.dispatcher = memory.backend, memory.dispatcher
    port = free_port()
    server = Server([ServedBackend(served), ServedDispatcher(served)], codec=BoundedCodec(1 << 20))
    await server.start("127.0.0.1", port)
    try:
        yield port, memory
    finally:
        server.close()
        await server.wait_closed()


async def test_a_silent_engine_fails_the_dispatch_stream(
    engine_port: tuple[int, MemoryEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(client, "KEEPALIVE_TIMEOUT_S", 0.3)
    port, memory = engine_port
    proxy = Blackhole(port)
    address = f"grpc://127.0.0.1:{await proxy.start()}"
    transport = GrpcTransport()
    dispatcher = await transport.connect(Dispatcher, address)
    await dispatcher.register_functions(
        RegisterFunctionsRequest(worker_id="w", functions=[FunctionSpec(name="f")])
    )
    requests: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()

    async def credits() -> AsyncIterator[TakeWorkRequest]:
        while (request := await requests.get()) is not None:
            yield request

    requests.put_nowait(TakeWorkRequest(worker_id="w", functions=["f"], max_items=10))
    stream = dispatcher.take_work_stream(credits())
    try:
        receiving = asyncio.ensure_future(anext(stream))
        await memory.backend.start_run(StartRunRequest(function="f", input=json.dumps(1).encode()))
        async with asyncio.timeout(10):
            assert len((await receiving).items) == 1  # the stream works through the proxy
        proxy.frozen = True
        with pytest.raises(TrineError) as failed:
            async with asyncio.timeout(10):  # without pings: never (TCP sees nothing wrong)
                await anext(stream)
        assert failed.value.code == "unavailable"
    finally:
        requests.put_nowait(None)
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
        await proxy.close()
        await transport.close()
