"""The worker-transport contract suite: what every transport that carries workers must do, over a
real connection, as pytest tests.

A worker transport has two halves in two distributions: the server, a ``trine.transports``
plugin's ``serve_workers`` (:class:`~trine_core.WorkerTransport`), and the worker's connector,
which lives with the worker SDK (a ``trine.worker_transports`` entry point). Core does not import
the SDK, so the test module, which may, hands both in as fixtures::

    from trine_core.testing.worker_transport import WorkerTransportContract

    class TestMyWorkerTransport(WorkerTransportContract):
        @pytest.fixture
        def serve(self) -> ServeWorkers:
            transport = MyTransport(Settings())
            return lambda hub, serving: transport.serve_workers(hub, "my://127.0.0.1:0", serving)

        @pytest.fixture
        def dial(self) -> Dial:
            async def dial(address, metadata):
                options = ConnectOptions(metadata=metadata, max_message_bytes=LIMIT)
                return await MyConnector().connect(address, options)
            return dial

``serve`` listens at a free address (the listener's ``address`` names it) and ``dial`` opens a
worker's stream there: an object with ``send``, ``receive``, ``end`` and ``close`` (the SDK's
``trine.transport.CoordinatorStream``). The stream must raise, when the coordinator ended it with
an error, an exception whose ``code`` is that error's code (the SDK's ``StreamError``), and
``ConnectionError`` (or another ``OSError``) when the connection broke.

The tests use small messages and bounded waits (:data:`WAIT_S`); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import pytest

from trine_core.errors import (
    PayloadTooLarge,
    TrineError,
    Unauthenticated,
    Unavailable,
    WorkerIdInUse,
)
from trine_core.worker_streams import WorkerHub, WorkerListener, WorkerServing, WorkerStream
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    Heartbeat,
    ReportAck,
    ReportRequest,
    RunCompleted,
    WorkerMessage,
    WorkerReport,
)
from trine_proto.vocabulary import ErrorCode

WAIT_S = 10.0
"""The longest any one step of a test waits (a transport that loses a message fails, not hangs)."""
LIMIT = 64 * 1024
"""The servers' ``max_message_bytes`` in these tests."""
LIMIT_SETTING = "contract.max_message_bytes"


class ClientStream(Protocol):
    """A worker's open stream, as the suite drives it (the SDK's ``CoordinatorStream``)."""

    async def send(self, message: WorkerMessage) -> None: ...

    async def receive(self) -> CoordinatorMessage | None: ...

    async def end(self) -> None: ...

    async def close(self) -> None: ...


ServeWorkers = Callable[[WorkerHub, WorkerServing], Awaitable[WorkerListener]]
"""The ``serve`` fixture: listen for workers at a free address with these settings."""
Dial = Callable[[str, Mapping[str, str]], Awaitable[ClientStream]]
"""The ``dial`` fixture: open a worker's stream to ``address``, sending ``metadata``."""
Script = Callable[[WorkerStream], Awaitable[None]]


@dataclasses.dataclass
class Served:
    """What the hub saw of one stream, and how its ``serve`` ended."""

    stream: WorkerStream
    received: list[WorkerMessage] = dataclasses.field(default_factory=list)
    ended: asyncio.Future[str] = dataclasses.field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """"returned", "cancelled", or the class name of what ``serve`` raised."""
    error: BaseException | None = None


class ScriptedHub:
    """A :class:`~trine_core.WorkerHub` that runs the test's ``script`` for each stream and
    records what it saw; ``accepted`` yields each stream as it arrives."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.served: asyncio.Queue[Served] = asyncio.Queue()
        self.current: Served | None = None

    async def serve(self, stream: WorkerStream) -> None:
        served = Served(stream)
        self.served.put_nowait(served)
        outcome = "returned"
        try:
            await self.script(stream)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException as exc:
            served.error, outcome = exc, type(exc).__name__
            raise
        finally:
            if not served.ended.done():
                served.ended.set_result(outcome)

    async def healthy(self) -> bool:
        return True

    async def next(self) -> Served:
        return await asyncio.wait_for(self.served.get(), WAIT_S)


def report(request_id: int, payload: bytes = b"") -> WorkerMessage:
    """A message that says which it is (and weighs ``payload``)."""
    commands = [Command(run_completed=RunCompleted(result=payload))] if payload else []
    return WorkerMessage(
        report=WorkerReport(request_id=request_id, report=ReportRequest(commands=commands))
    )


def ack(request_id: int) -> CoordinatorMessage:
    return CoordinatorMessage(report_ack=ReportAck(request_id=request_id))


def request_id(message: WorkerMessage | None) -> int:
    assert message is not None
    assert message.report is not None, message
    return message.report.request_id


def ack_id(message: CoordinatorMessage | None) -> int:
    assert message is not None
    assert message.report_ack is not None, message
    return message.report_ack.request_id


async def next_ack(worker: ClientStream) -> int:
    """The request id of the worker's next message, which must be an ack."""
    return ack_id(await asyncio.wait_for(worker.receive(), WAIT_S))


async def echo(stream: WorkerStream) -> None:
    """Answer each report with its ack, until the worker ends its side."""
    while (message := await stream.receive()) is not None:
        if message.report is not None:
            await stream.send(ack(message.report.request_id))


async def stream_end(stream: ClientStream) -> Exception | None:
    """Read until the stream ends: None if it ended normally, else the error it ended with (a
    wait past :data:`WAIT_S` fails the test)."""
    try:
        while await asyncio.wait_for(stream.receive(), WAIT_S) is not None:
            pass
    except TimeoutError:
        raise
    except Exception as exc:
        return exc
    return None


async def refusal(dial: Dial, address: str, message: WorkerMessage) -> Exception | None:
    """Dial, send ``message`` and read to the end: the first error with a ``code`` on the way
    (the refusal), else how the stream ended. A send may fail first with a broken connection
    (the coordinator already ended the stream): the refusal is then read from the stream."""
    try:
        stream = await asyncio.wait_for(dial(address, {}), WAIT_S)
    except TimeoutError:
        raise
    except Exception as exc:  # a connector that waits for the coordinator's answer
        return exc
    try:
        try:
            await stream.send(message)
        except TimeoutError:
            raise
        except Exception as exc:
            if hasattr(exc, "code"):
                return exc
        return await stream_end(stream)
    finally:
        await stream.close()


class WorkerTransportContract:
    """Subclass it and give it ``serve`` and ``dial`` fixtures (see the module's docstring)."""

    @pytest.fixture
    def serve(self) -> ServeWorkers:
        raise NotImplementedError("give the suite a 'serve' fixture")

    @pytest.fixture
    def dial(self) -> Dial:
        raise NotImplementedError("give the suite a 'dial' fixture")

    @contextlib.asynccontextmanager
    async def listening(
        self, serve: ServeWorkers, script: Script, limit: int = LIMIT
    ) -> AsyncIterator[tuple[ScriptedHub, str]]:
        hub = ScriptedHub(script)
        listener = await serve(hub, WorkerServing(limit, LIMIT_SETTING))
        try:
            yield hub, listener.address
        finally:
            await asyncio.wait_for(listener.close(), WAIT_S)

    @contextlib.asynccontextmanager
    async def worker(
        self, dial: Dial, address: str, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ClientStream]:
        stream = await asyncio.wait_for(dial(address, dict(metadata or {})), WAIT_S)
        try:
            yield stream
        finally:
            await stream.close()

    # -- order and volume ------------------------------------------------------------------------

    async def test_messages_arrive_whole_and_in_order_both_ways(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async with (
            self.listening(serve, echo) as (hub, address),
            self.worker(dial, address) as worker,
        ):
            for i in range(1, 51):
                await worker.send(report(i))
                assert await next_ack(worker) == i
            await worker.end()
            assert await stream_end(worker) is None
            served = await hub.next()
            assert await asyncio.wait_for(served.ended, WAIT_S) == "returned"

    async def test_many_messages_sent_at_once_each_way_all_arrive_in_order(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        count = 2000

        async def burst(stream: WorkerStream) -> None:
            for i in range(count):  # before reading anything
                await stream.send(ack(i))
            ids = []
            while (message := await stream.receive()) is not None:
                ids.append(request_id(message))
            assert ids == list(range(count))

        async with (
            self.listening(serve, burst) as (hub, address),
            self.worker(dial, address) as worker,
        ):
            for i in range(count):  # before reading anything
                await worker.send(report(i))
            await worker.end()
            got = [await next_ack(worker) for _ in range(count)]
            assert got == list(range(count))
            assert await stream_end(worker) is None
            served = await hub.next()
            assert await asyncio.wait_for(served.ended, WAIT_S) == "returned"

    async def test_sessions_at_once_each_get_their_own_messages(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async def tagged(stream: WorkerStream) -> None:
            tag = int(stream.metadata["trine-worker-instance"])
            while (message := await stream.receive()) is not None:
                await stream.send(ack(tag * 1000 + request_id(message)))

        async def one(address: str, tag: int) -> list[int]:
            async with self.worker(dial, address, {"trine-worker-instance": str(tag)}) as worker:
                for i in range(20):
                    await worker.send(report(i))
                await worker.end()
                got = []
                while (message := await asyncio.wait_for(worker.receive(), WAIT_S)) is not None:
                    got.append(ack_id(message))
                return got

        async with self.listening(serve, tagged) as (_, address):
            results = await asyncio.gather(*(one(address, tag) for tag in range(1, 11)))
        for tag, got in enumerate(results, start=1):
            assert got == [tag * 1000 + i for i in range(20)]

    # -- what the hub learns ---------------------------------------------------------------------

    async def test_the_workers_metadata_reaches_the_hub_before_any_message(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        seen: list[Mapping[str, str]] = []

        async def note(stream: WorkerStream) -> None:
            seen.append(dict(stream.metadata))
            await echo(stream)

        metadata = {"authorization": "Bearer s3cret", "trine-worker-instance": "i-1"}
        async with (
            self.listening(serve, note) as (hub, address),
            self.worker(dial, address, metadata) as worker,
        ):
            await worker.send(report(1))
            assert await next_ack(worker) == 1
        assert seen[0]["authorization"] == "Bearer s3cret"
        assert seen[0]["trine-worker-instance"] == "i-1"
        served = await hub.next()
        assert isinstance(served.stream.peer, str)

    # -- refusals and limits ---------------------------------------------------------------------

    async def test_a_refusal_before_any_message_reaches_the_worker_with_its_code(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async def refuse(stream: WorkerStream) -> None:
            raise WorkerIdInUse("worker_id 'w' is held by another live worker")

        async with self.listening(serve, refuse) as (_, address):
            error = await refusal(dial, address, report(1))
        assert getattr(error, "code", None) == ErrorCode.WORKER_ID_IN_USE, error
        assert "held by another live worker" in str(error)

    async def test_a_refusal_after_messages_reaches_the_worker(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        """A session ended with an error (its token was revoked) tells the worker why. (What the
        hub sent just before may be lost with it: gRPC resets a stream the worker still holds
        open, and the session is over anyway.)"""

        async def revoke(stream: WorkerStream) -> None:
            await stream.receive()
            await stream.send(ack(1))
            await stream.receive()  # the worker read the ack before it sent this
            raise Unauthenticated("token 'w' was revoked")

        async with (
            self.listening(serve, revoke) as (_, address),
            self.worker(dial, address) as worker,
        ):
            await worker.send(report(1))
            assert await next_ack(worker) == 1
            await worker.send(report(2))
            error = await stream_end(worker)
            assert getattr(error, "code", None) == ErrorCode.UNAUTHENTICATED, error
            assert "was revoked" in str(error)

    async def test_a_message_over_the_limit_is_refused_naming_the_limit(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async with (
            self.listening(serve, echo) as (hub, address),
            self.worker(dial, address) as worker,
        ):
            await worker.send(report(1))
            assert await next_ack(worker) == 1
            with contextlib.suppress(OSError, Exception):  # the server may stop reading first
                await worker.send(report(2, b"x" * (LIMIT + 1)))
            error = await stream_end(worker)
            assert getattr(error, "code", None) == ErrorCode.PAYLOAD_TOO_LARGE, error
            served = await hub.next()
            assert await asyncio.wait_for(served.ended, WAIT_S) == PayloadTooLarge.__name__
            assert isinstance(served.error, PayloadTooLarge)
            assert LIMIT_SETTING in served.error.message
            assert str(LIMIT) in served.error.message

    # -- ends ------------------------------------------------------------------------------------

    async def test_the_worker_ending_its_side_is_the_end_of_its_messages(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async def farewell(stream: WorkerStream) -> None:
            await echo(stream)
            await stream.send(ack(99))  # the worker still reads after ending its side

        async with (
            self.listening(serve, farewell) as (hub, address),
            self.worker(dial, address) as worker,
        ):
            await worker.send(report(1))
            await worker.end()
            assert await next_ack(worker) == 1
            assert await next_ack(worker) == 99
            assert await stream_end(worker) is None
            served = await hub.next()
            assert await asyncio.wait_for(served.ended, WAIT_S) == "returned"

    async def test_the_hub_returning_ends_the_stream_for_the_worker(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async def brief(stream: WorkerStream) -> None:
            await stream.receive()
            await stream.send(ack(7))

        async with (
            self.listening(serve, brief) as (_, address),
            self.worker(dial, address) as worker,
        ):
            await worker.send(report(1))
            assert await next_ack(worker) == 7
            assert await stream_end(worker) is None

    async def test_a_worker_gone_without_ending_its_side_ends_its_stream(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        """The worker process died (its connection closed or reset, no end of stream): the hub's
        ``receive`` raises ``Unavailable``, or the transport cancels ``serve``."""
        async with self.listening(serve, echo) as (hub, address):
            worker = await asyncio.wait_for(dial(address, {}), WAIT_S)
            await worker.send(report(1))
            assert await next_ack(worker) == 1
            await worker.close()  # without end(): gone
            served = await hub.next()
            outcome = await asyncio.wait_for(served.ended, WAIT_S)
            assert outcome in ("cancelled", Unavailable.__name__), outcome

    async def test_sending_to_a_worker_that_is_gone_fails_or_is_dropped_never_hangs(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        gone = asyncio.Event()

        async def keep_sending(stream: WorkerStream) -> None:
            await stream.receive()
            await gone.wait()
            for i in range(10_000):  # past any buffer: the transport must notice
                await stream.send(ack(i))

        async with self.listening(serve, keep_sending) as (hub, address):
            worker = await asyncio.wait_for(dial(address, {}), WAIT_S)
            await worker.send(report(1))
            served = await hub.next()
            await worker.close()
            gone.set()
            outcome = await asyncio.wait_for(served.ended, WAIT_S)
            assert outcome in ("returned", "cancelled", Unavailable.__name__), outcome

    async def test_closing_the_listener_ends_open_streams(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        hub = ScriptedHub(echo)
        listener = await serve(hub, WorkerServing(LIMIT, LIMIT_SETTING))
        try:
            worker = await asyncio.wait_for(dial(listener.address, {}), WAIT_S)
            await worker.send(report(1))
            assert await next_ack(worker) == 1
            served = await hub.next()
        finally:
            await asyncio.wait_for(listener.close(), WAIT_S)
        try:
            outcome = await asyncio.wait_for(served.ended, WAIT_S)
            assert outcome in ("cancelled", "returned", Unavailable.__name__), outcome
            await stream_end(worker)  # ends, one way or another, without hanging
        finally:
            await worker.close()

    async def test_a_hub_error_other_than_a_trine_error_still_ends_the_stream(
        self, serve: ServeWorkers, dial: Dial
    ) -> None:
        async def broken(stream: WorkerStream) -> None:
            await stream.receive()
            raise TrineError("the hub broke")

        async with self.listening(serve, broken) as (_, address):
            error = await refusal(dial, address, WorkerMessage(heartbeat=Heartbeat()))
        assert getattr(error, "code", None) == ErrorCode.INTERNAL, error
