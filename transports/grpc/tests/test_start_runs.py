"""``Backend.start_run`` over the ``StartRuns`` stream: concurrent starts share one stream and
are answered each on its own; an engine without the stream is asked with ``StartRun`` calls; a
broken stream fails only the starts it carried, and the next start opens another."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import grpclib
import pytest
from grpclib.const import Status

from trine_core import Backend, Dispatcher, Unavailable, UnknownFunction
from trine_core.testing import free_port
from trine_core.testing.contracts import BackendContract, ContractSubject
from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    Run,
    StartRunRequest,
    StartRunResponse,
    StartRunsRequest,
    StartRunsResponse,
)
from trine_transport_grpc import GrpcTransport
from trine_transport_grpc import server as served


class Starts:
    """A Backend of start_run alone: a run named after its function, after ``delay_s``; the
    function ``nope`` is unknown; ``entered`` is set once a start is under way."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.started: list[str] = []
        self.entered = asyncio.Event()

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        if message.function == "nope":
            raise UnknownFunction("no worker registered 'nope'", known=["f"])
        self.entered.set()
        await asyncio.sleep(self.delay_s)
        self.started.append(message.function)
        return StartRunResponse(run=Run(id=message.function, function=message.function))


async def test_concurrent_starts_share_one_stream_and_are_answered_each_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    streams: list[int] = []
    original = served.ServedBackend.start_runs

    def counted(
        self: served.ServedBackend, messages: AsyncIterator[StartRunsRequest]
    ) -> AsyncIterator[StartRunsResponse]:
        streams.append(1)
        return original(self, messages)

    async def no_unary(self: served.ServedBackend, message: StartRunRequest) -> StartRunResponse:
        raise AssertionError("a StartRun call: the stream was not used")

    monkeypatch.setattr(served.ServedBackend, "start_runs", counted)
    monkeypatch.setattr(served.ServedBackend, "start_run", no_unary)
    backend = Starts(delay_s=0.01)
    address = f"grpc://127.0.0.1:{free_port()}"
    server, client = GrpcTransport(), GrpcTransport()
    await server.serve(Backend, backend, address)  # type: ignore[arg-type]
    try:
        remote = await client.connect(Backend, address)
        names = [f"r{i}" for i in range(50)]
        answers = await asyncio.gather(
            *(remote.start_run(StartRunRequest(function=name)) for name in [*names, "nope"]),
            return_exceptions=True,
        )
        assert [a.run.id for a in answers[:-1] if isinstance(a, StartRunResponse) and a.run] == (
            names
        )
        refused = answers[-1]
        assert isinstance(refused, UnknownFunction)
        assert refused.details == {"known": ["f"]}
        again = await remote.start_run(StartRunRequest(function="later"))
        assert again.run is not None
        assert again.run.id == "later"
        assert streams == [1]
    finally:
        await client.close()
        await server.close()


async def test_starts_under_way_when_the_server_closes_fail_as_unavailable() -> None:
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    starts = Starts(delay_s=30)
    await server.serve(Backend, starts, address)  # type: ignore[arg-type]
    try:
        remote = await client.connect(Backend, address)
        stuck = asyncio.ensure_future(remote.start_run(StartRunRequest(function="slow")))
        await asyncio.wait_for(starts.entered.wait(), 5)
        await server.close()
        with pytest.raises(Unavailable, match="stopping"):
            await asyncio.wait_for(stuck, 5)
    finally:
        await client.close()


class Records(logging.Handler):
    """The records of a logger, and an event set at the first."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.came = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.came.set()


async def test_a_caller_gone_mid_stream_is_no_error_in_the_engine_log() -> None:
    """A gateway that dies (``kill -9``) while its starts are under way: grpclib cancels the
    stream's handler, which must let the cancellation through (not answer UNAVAILABLE on a
    connection that is gone), or grpclib logs "Failed to handle cancellation" with two
    tracebacks in the engine's log."""
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    starts = Starts(delay_s=30)
    await server.serve(Backend, starts, address)  # type: ignore[arg-type]
    grpclib_server = logging.getLogger("grpclib.server")
    records, level = Records(), grpclib_server.level
    grpclib_server.addHandler(records)
    grpclib_server.setLevel(logging.INFO)
    try:
        remote = await client.connect(Backend, address)
        stuck = asyncio.ensure_future(remote.start_run(StartRunRequest(function="slow")))
        await asyncio.wait_for(starts.entered.wait(), 5)
        await client.close()  # the connection goes; the engine serves on
        await asyncio.wait_for(records.came.wait(), 5)  # grpclib ended the handler
        assert [(r.levelno, r.getMessage()) for r in records.records] == [
            (logging.INFO, "Request was cancelled: Connection lost")
        ]
        with pytest.raises(Unavailable):  # the client's own start ends with its connection
            await asyncio.wait_for(stuck, 5)
    finally:
        grpclib_server.removeHandler(records)
        grpclib_server.setLevel(level)
        await client.close()
        await server.close()


async def test_a_broken_stream_fails_its_starts_and_the_next_start_opens_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[int] = []
    original = served.ServedBackend.start_runs

    async def breaks_once(
        self: served.ServedBackend, messages: AsyncIterator[StartRunsRequest]
    ) -> AsyncIterator[StartRunsResponse]:
        opened.append(1)
        if len(opened) == 1:
            await anext(messages)
            raise grpclib.GRPCError(Status.UNAVAILABLE, "broken")
        async for response in original(self, messages):
            yield response

    monkeypatch.setattr(served.ServedBackend, "start_runs", breaks_once)
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    await server.serve(Backend, Starts(), address)  # type: ignore[arg-type]
    try:
        remote = await client.connect(Backend, address)
        with pytest.raises(Unavailable, match="broken"):
            await remote.start_run(StartRunRequest(function="first"))
        answer = await remote.start_run(StartRunRequest(function="after"))
        assert answer.run is not None
        assert answer.run.id == "after"
        assert opened == [1, 1]
    finally:
        await client.close()
        await server.close()


class OlderServedBackend(served.ServedBackend):
    """The Backend service as an engine before ``StartRuns`` served it."""

    refused = 0

    async def start_runs(
        self, messages: AsyncIterator[StartRunsRequest]
    ) -> AsyncIterator[StartRunsResponse]:
        OlderServedBackend.refused += 1
        raise grpclib.GRPCError(Status.UNIMPLEMENTED)
        yield StartRunsResponse()  # pragma: no cover - a generator, as the generated base's


class TestBackendAgainstAnEngineWithoutStartRuns(BackendContract):
    @pytest.fixture
    async def subject(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ContractSubject]:
        monkeypatch.setattr(served, "ServedBackend", OlderServedBackend)
        memory = MemoryEngine()
        address = f"grpc://127.0.0.1:{free_port()}"
        server, client = GrpcTransport(), GrpcTransport()
        await server.serve(Backend, memory.backend, address)
        await server.serve(Dispatcher, memory.dispatcher, address)
        refused = OlderServedBackend.refused
        try:
            yield ContractSubject(
                await client.connect(Backend, address), await client.connect(Dispatcher, address)
            )
        finally:
            await client.close()
            await server.close()
        assert OlderServedBackend.refused <= refused + 1  # asked once, then StartRun calls


async def test_a_stream_the_server_ended_leaves_no_task_failing_unseen() -> None:
    """The stream's sending task is the client's to end: left running (as the generated stubs
    leave it), it failed on the closed stream once the server stopped, and asyncio logged that
    as "Task exception was never retrieved", a traceback in the gateway's log."""
    loop = asyncio.get_running_loop()
    unseen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unseen.append(context))
    address = f"grpc://127.0.0.1:{free_port()}"
    client, server = GrpcTransport(), GrpcTransport()
    await server.serve(Backend, Starts(), address)  # type: ignore[arg-type]
    try:
        remote = await client.connect(Backend, address)
        answer = await remote.start_run(StartRunRequest(function="one"))
        assert answer.run is not None
        await server.close()  # the engine stops; the gateway's session is still open
        with pytest.raises(Unavailable):
            await remote.start_run(StartRunRequest(function="refused"))
        gc.collect()
    finally:
        await client.close()
        loop.set_exception_handler(None)
    assert unseen == []
