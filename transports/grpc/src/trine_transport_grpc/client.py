"""A ``Backend``, ``Dispatcher`` or ``WorkerRegistry`` on another process: each contract method
calls the generated stub with a deadline and turns errors back into the TrineErrors the engine
(or the coordinator) raised. The clients implement the contracts method by method, so mypy checks
them against the Protocols.

grpclib's channel connects lazily and reconnects on the next call after a failure, so a peer
that restarts is picked up again; until then calls raise ``Unavailable`` and the caller decides
how to back off (the coordinator retries, the gateway answers 503).

One HTTP/2 connection carries at most 100 concurrent streams (the server's setting, h2's
default) and grpclib queues a call beyond that until one ends: a gateway holding that many
``subscribe`` streams (SSE clients) would get no other call through. So calls to a peer go over a
``ChannelPool``, which opens another connection when the ones it has are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar, cast

import grpclib
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status

from trine_core import (
    MAX_PAYLOAD_BYTES,
    Backend,
    Dispatcher,
    TrineError,
    Unavailable,
    WorkerRegistry,
    report_each,
    take_work_polling,
)
from trine_proto.limits import BoundedCodec, derived_limit
from trine_proto.trine.v1 import (
    BackendStub,
    CancelRunRequest,
    DispatcherStub,
    Event,
    GetJournalRequest,
    GetJournalResponse,
    GetRunRequest,
    ListBuildsRequest,
    ListBuildsResponse,
    ListFunctionsRequest,
    ListFunctionsResponse,
    ListRunsRequest,
    ListRunsResponse,
    ListWorkersRequest,
    ListWorkersResponse,
    MoveRunRequest,
    RegisterFunctionsRequest,
    RegisterFunctionsResponse,
    ReleaseLeasesRequest,
    ReleaseLeasesResponse,
    RenewLeasesRequest,
    RenewLeasesResponse,
    ReportBatchRequest,
    ReportBatchResponse,
    ReportRequest,
    ReportResponse,
    RetryRunRequest,
    Run,
    SignalRunRequest,
    SignalRunResponse,
    StartRunRequest,
    StartRunResponse,
    StartRunsItem,
    StartRunsRequest,
    StartRunsResponse,
    SubscribeRequest,
    TakeWorkRequest,
    TakeWorkResponse,
    WaitRunRequest,
    WorkerRegistryStub,
)
from trine_transport_grpc.errors import from_grpc, from_json, unreachable

R = TypeVar("R")
DEFAULT_DEADLINE_S = 10.0
UNREACHABLE = (ConnectionError, OSError, grpclib.exceptions.StreamTerminatedError)
STREAMS_PER_CHANNEL = 64
"""Calls in flight on one connection before the pool opens another (below the server's 100)."""
STREAM_WINDOW_BYTES = 1 << 20
"""What a stream may receive ahead of its reader (HTTP/2 flow control): a stream read slowly
(an SSE client's ``subscribe``) holds at most this much here, and its sender waits."""
RETRY_STREAM_S = 60.0
"""How long ``start_run`` uses ``StartRun`` calls after the peer refused ``StartRuns``."""
CONNECTION_WINDOW_BYTES = (STREAMS_PER_CHANNEL + 1) * STREAM_WINDOW_BYTES
"""Room for every stream's window at once: unread data counts against the connection's window
too (grpclib acknowledges both on reading), so with grpclib's defaults (4 MiB each) one stalled
stream would stop every call on its connection."""
KEEPALIVE_S = 10.0
"""While a call is open on a connection, an HTTP/2 ping every this long (grpclib sends none by
default, and at most one every 5 minutes without data otherwise). A long call (the dispatch
stream, an SSE client's ``subscribe``) on a connection to an engine whose host vanished without a
reset would otherwise wait for TCP to give up, many minutes later."""
KEEPALIVE_TIMEOUT_S = 10.0
"""A ping unanswered this long closes the connection: its calls fail ``unavailable``, and the
dispatch stream is opened again."""


class ChannelPool:
    """The connections to one peer; a call takes the first with a free stream. ``tls``: TLS
    (server verified, client certificate presented) from :func:`trine_core.tls.client_context`;
    None dials plain."""

    def __init__(
        self,
        host: str,
        port: int,
        streams_per_channel: int = STREAMS_PER_CHANNEL,
        tls: ssl.SSLContext | None = None,
        max_message_bytes: int = derived_limit(MAX_PAYLOAD_BYTES.default),
    ) -> None:
        """``max_message_bytes``: a larger reply is refused (``RESOURCE_EXHAUSTED``) from its
        length prefix, before its body is read (:mod:`trine_proto.limits`)."""
        self.host, self.port = host, port
        self._ssl = tls
        self._max_message_bytes = max_message_bytes
        self._limit = streams_per_channel
        self._channels: list[Channel] = []
        self._in_use: dict[Channel, int] = {}
        self._on_close: list[Callable[[], None]] = []

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the pool closes (a long-lived stream's task ends then)."""
        self._on_close.append(callback)

    @contextlib.contextmanager
    def channel(self) -> Iterator[Channel]:
        channel = next((c for c in self._channels if self._in_use[c] < self._limit), None)
        if channel is None:
            codec = BoundedCodec(self._max_message_bytes)
            config = Configuration(
                http2_stream_window_size=STREAM_WINDOW_BYTES,
                http2_connection_window_size=CONNECTION_WINDOW_BYTES,
                _keepalive_time=KEEPALIVE_S,
                _keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                _http2_max_pings_without_data=0,  # no limit: a quiet stream is still watched
                _http2_min_sent_ping_interval_without_data=KEEPALIVE_S,
            )
            channel = Channel(self.host, self.port, codec=codec, ssl=self._ssl, config=config)
            self._channels.append(channel)
            self._in_use[channel] = 0
        self._in_use[channel] += 1
        try:
            yield channel
        finally:
            if channel in self._in_use:  # not if the pool was closed meanwhile
                self._in_use[channel] -= 1

    def close(self) -> None:
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._in_use.clear()


class Peer:
    """The calls to one peer: a deadline on each, and its errors as TrineErrors naming it."""

    def __init__(
        self, pool: ChannelPool, address: str, deadline_s: float = DEFAULT_DEADLINE_S
    ) -> None:
        self.pool = pool
        self.address = address
        self.deadline_s = deadline_s

    async def unary(self, call: Callable[[Channel, float], Awaitable[R]], wait_ms: int = 0) -> R:
        """``call(channel, timeout)``; a long-poll's ``wait_ms`` is added to the deadline."""
        try:
            with self.pool.channel() as channel:
                return await call(channel, self.deadline_s + wait_ms / 1000)
        except grpclib.GRPCError as exc:
            raise from_grpc(exc, self.address) from None
        except UNREACHABLE as exc:
            raise unreachable(exc, self.address) from None

    async def stream(self, call: Callable[[Channel], AsyncIterator[R]]) -> AsyncIterator[R]:
        try:
            with self.pool.channel() as channel:
                # aclosing: when our consumer stops early, the gRPC stream is reset now (and the
                # peer's subscription closed), not whenever the stub's generator is collected.
                async with contextlib.aclosing(cast(AsyncGenerator[R], call(channel))) as items:
                    async for item in items:
                        yield item
        except grpclib.GRPCError as exc:
            raise from_grpc(exc, self.address) from None
        except UNREACHABLE as exc:
            raise unreachable(exc, self.address) from None


class RemoteBackend:
    """A :class:`~trine_core.Backend` served by another process."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._starts = _StartStream(peer)

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        """Over the peer's ``StartRuns`` stream (:class:`_StartStream`); against an engine
        without it, one ``StartRun`` call. With ``wait_ms`` the engine long-polls in the start:
        its deadline grows by as much (an engine from before ``wait_ms`` answers at once,
        ``waited`` false)."""
        if self._starts.usable:
            try:
                return await self._starts.start_run(message)
            except _Unimplemented:
                pass
        return await self._peer.unary(
            lambda ch, t: BackendStub(ch).start_run(message, timeout=t), message.wait_ms
        )

    async def get_run(self, message: GetRunRequest) -> Run:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).get_run(message, timeout=t))

    async def wait_run(self, message: WaitRunRequest) -> Run:
        return await self._peer.unary(
            lambda ch, t: BackendStub(ch).wait_run(message, timeout=t), message.wait_ms
        )

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).list_runs(message, timeout=t))

    def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        return self._peer.stream(lambda ch: BackendStub(ch).subscribe(message))

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).cancel_run(message, timeout=t))

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).signal_run(message, timeout=t))

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).get_journal(message, timeout=t))

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        return await self._peer.unary(
            lambda ch, t: BackendStub(ch).list_functions(message, timeout=t)
        )

    async def retry_run(self, message: RetryRunRequest) -> Run:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).retry_run(message, timeout=t))

    async def move_run(self, message: MoveRunRequest) -> Run:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).move_run(message, timeout=t))

    async def list_builds(self, message: ListBuildsRequest) -> ListBuildsResponse:
        return await self._peer.unary(lambda ch, t: BackendStub(ch).list_builds(message, timeout=t))


class _Unimplemented(Exception):
    """The peer has no such method (an engine from before it): nothing was done."""


class RemoteDispatcher:
    """A :class:`~trine_core.Dispatcher` served by another process."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._batches = True
        """False once the engine answered ``ReportBatch`` UNIMPLEMENTED (an engine from before
        it): reports then go one ``Report`` call each, as they did."""
        self._streams = True
        """False once the engine answered ``TakeWorkStream`` UNIMPLEMENTED: ``take_work``
        long-polls then, as before."""

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        return await self._peer.unary(
            lambda ch, t: DispatcherStub(ch).register_functions(message, timeout=t)
        )

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        return await self._peer.unary(
            lambda ch, t: DispatcherStub(ch).take_work(message, timeout=t), message.wait_ms
        )

    async def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        """One ``TakeWorkStream`` call (no deadline: it lasts as long as the session); against
        an engine without it, ``take_work`` long-polls (it refused the stream before taking
        anything). The requests are read by grpclib's sending side as the caller makes them."""
        if self._streams:
            # Look at the first answer, or the refusal, before handing the stream on; the
            # requests sent meanwhile are kept, to grant their credit again to the fallback.
            sent = _Kept(requests)
            call = self._peer.stream(
                lambda ch: _or_unimplemented(
                    _bidi(
                        ch,
                        "/trine.v1.Dispatcher/TakeWorkStream",
                        sent,
                        TakeWorkRequest,
                        TakeWorkResponse,
                    )
                )
            )
            # aclosing: a caller that stops reading (its worker is gone) has the call reset
            # before its next call (the release of those leases) reaches the engine; left to
            # the collector, the engine could hand the released runs back to this stream.
            try:
                async with contextlib.aclosing(
                    cast(AsyncGenerator[TakeWorkResponse], call)
                ) as stream:
                    try:
                        first = await anext(stream, None)
                    except _Unimplemented:
                        self._streams = False
                    else:
                        sent.forget()
                        if first is None:
                            return
                        yield first
                        async for response in stream:
                            yield response
                        return
                async for response in take_work_polling(self.take_work, sent.again()):
                    yield response
                return
            finally:
                sent.close()
        async for response in take_work_polling(self.take_work, requests):
            yield response

    async def report(self, message: ReportRequest) -> ReportResponse:
        return await self._peer.unary(lambda ch, t: DispatcherStub(ch).report(message, timeout=t))

    async def report_batch(self, message: ReportBatchRequest) -> ReportBatchResponse:
        """One ``ReportBatch`` call; against an engine without it, a ``Report`` call per report
        (it refused the batch before doing anything, so nothing is sent twice)."""
        if self._batches:
            try:
                return await self._peer.unary(lambda ch, t: _report_batch(ch, message, t))
            except _Unimplemented:
                self._batches = False
        return await report_each(self.report, message)

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        return await self._peer.unary(
            lambda ch, t: DispatcherStub(ch).renew_leases(message, timeout=t)
        )

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        return await self._peer.unary(
            lambda ch, t: DispatcherStub(ch).release_leases(message, timeout=t)
        )


async def _report_batch(
    channel: Channel, message: ReportBatchRequest, deadline_s: float
) -> ReportBatchResponse:
    try:
        return await DispatcherStub(channel).report_batch(message, timeout=deadline_s)
    except grpclib.GRPCError as exc:
        if exc.status is Status.UNIMPLEMENTED:
            raise _Unimplemented from None
        raise


class _Kept:
    """The caller's ``requests``, pumped into a queue (so a refused stream's sending task,
    cancelled, does not close the caller's iterator) and each kept until :meth:`forget` (the
    stream was accepted), so that :meth:`again` can hand the ones a refused stream took, and the
    rest, to the fallback."""

    def __init__(self, requests: AsyncIterator[TakeWorkRequest]) -> None:
        self._queue: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
        self._kept: list[TakeWorkRequest] | None = []
        self._pump = asyncio.create_task(self._fill(requests))

    async def _fill(self, requests: AsyncIterator[TakeWorkRequest]) -> None:
        try:
            async for request in requests:
                self._queue.put_nowait(request)
        finally:
            self._queue.put_nowait(None)

    def __aiter__(self) -> _Kept:
        return self

    async def __anext__(self) -> TakeWorkRequest:
        request = await self._queue.get()
        if request is None:
            self._queue.put_nowait(None)  # for whoever reads next
            raise StopAsyncIteration
        if self._kept is not None:
            self._kept.append(request)
        return request

    def forget(self) -> None:
        self._kept = None

    async def again(self) -> AsyncIterator[TakeWorkRequest]:
        kept, self._kept = self._kept or [], None
        for request in kept:
            yield request
        async for request in self:
            yield request

    def close(self) -> None:
        self._pump.cancel()


Q = TypeVar("Q")


async def _bidi(
    channel: Channel,
    route: str,
    requests: AsyncIterator[Q],
    request_type: type[Q],
    response_type: type[R],
) -> AsyncIterator[R]:
    """A stream-stream call, as the generated stubs make it but with its sending task owned:
    cancelled and awaited when the call ends. The stubs leave it running, so once the peer
    closed the stream its failure was logged as "Task exception was never retrieved", with a
    traceback. And when the peer ends the call first (an engine stopping), our side is ended
    before the trailers are read, so that their status is what the caller gets rather than
    grpclib's "Outgoing stream was not ended"."""
    sender: asyncio.Task[None] | None = None
    try:
        async with channel.request(
            route, Cardinality.STREAM_STREAM, request_type, response_type
        ) as stream:
            await stream.send_request()

            async def send_all() -> None:
                async for request in requests:
                    await stream.send_message(request)
                await stream.end()

            sender = asyncio.create_task(send_all())
            async for response in stream:
                yield response
            if not sender.done():  # the peer ended first: end ours, then read its status
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
                with contextlib.suppress(Exception):
                    await stream.end()
    finally:
        # Only once the call is left: a caller that stops reading (a coordinator whose worker
        # is gone) must have the stream reset before anything else it does reaches the peer
        # (the release of its leases), as leaving the call does at once, with no await.
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender


async def _or_unimplemented(responses: AsyncIterator[R]) -> AsyncIterator[R]:
    """A streaming call's ``responses``, with an ``UNIMPLEMENTED`` answer (an engine from before
    that call: it did nothing) raised as ``_Unimplemented``, for the caller to fall back on.
    Closing this closes the call at once (``async for`` alone would leave it to the collector,
    and its reset would reach the peer after whatever the caller does next)."""
    try:
        async with contextlib.aclosing(cast(AsyncGenerator[R], responses)) as call:
            async for response in call:
                yield response
    except grpclib.GRPCError as exc:
        if exc.status is Status.UNIMPLEMENTED:
            raise _Unimplemented from None
        raise


class _StartStream:
    """``start_run`` over one ``StartRuns`` stream to the peer, shared by every caller: each
    start is an item with an id, answered under that id whenever it is ready, and what callers
    ask in one turn of the loop goes in one message. A per-run unary call cost the engine an
    HTTP/2 stream, a headers frame each way, trailers and grpclib's per-call objects.

    The stream opens on the first start and again on the first start after it broke. When it
    breaks, the starts it had not answered fail as a broken ``StartRun`` call fails
    (``Unavailable``: the run may or may not have been accepted). An engine without
    ``StartRuns`` answers UNIMPLEMENTED having done nothing: those starts, and every later one,
    go as ``StartRun`` calls."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._ids = itertools.count(1)
        self._session: _StartSession | None = None
        self._refused_at: float | None = None
        peer.pool.on_close(self.close)

    @property
    def usable(self) -> bool:
        """False for ``RETRY_STREAM_S`` after the peer answered ``StartRuns`` UNIMPLEMENTED (an
        older engine; or a server whose roles have not started yet, so it is asked again)."""
        if self._refused_at is None:
            return True
        if time.monotonic() - self._refused_at >= RETRY_STREAM_S:
            self._refused_at = None
            return True
        return False

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        session = self._session
        if session is None or session.ended:
            session = self._session = _StartSession(self, self._peer)
        ident = next(self._ids)
        answer = session.send(ident, message)
        try:
            async with asyncio.timeout(self._peer.deadline_s + message.wait_ms / 1000):
                return await answer
        except TimeoutError:
            # A stream that answers nothing may be dead on a connection that lives on: the next
            # start opens another (the starts under way on this one fail as Unavailable).
            session.close()
            raise Unavailable(f"{self._peer.address}: deadline_exceeded: StartRuns") from None
        finally:
            session.forget(ident)

    def refused(self) -> None:
        self._refused_at = time.monotonic()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class _StartSession:
    """One ``StartRuns`` stream: its outbox, the starts it has not answered, its task."""

    def __init__(self, owner: _StartStream, peer: Peer) -> None:
        self._owner = owner
        self._peer = peer
        self._outbox: asyncio.Queue[StartRunsItem | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[StartRunResponse]] = {}
        self.ended = False
        self._task = asyncio.create_task(self._run(), name="trine-grpc-start-runs")

    def send(self, ident: int, message: StartRunRequest) -> asyncio.Future[StartRunResponse]:
        answer: asyncio.Future[StartRunResponse] = asyncio.get_running_loop().create_future()
        self._pending[ident] = answer
        self._outbox.put_nowait(StartRunsItem(id=ident, request=message))
        return answer

    def forget(self, ident: int) -> None:
        self._pending.pop(ident, None)

    async def _requests(self) -> AsyncIterator[StartRunsRequest]:
        """What callers asked since the last message, in one; ends with the session."""
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            items = [item]
            while not self._outbox.empty():
                item = self._outbox.get_nowait()
                if item is None:
                    yield StartRunsRequest(starts=items)
                    return
                items.append(item)
            yield StartRunsRequest(starts=items)

    async def _run(self) -> None:
        failure: Exception = Unavailable(f"{self._peer.address}: the StartRuns stream ended")
        try:
            call = self._peer.stream(
                lambda ch: _or_unimplemented(
                    _bidi(
                        ch,
                        "/trine.v1.Backend/StartRuns",
                        self._requests(),
                        StartRunsRequest,
                        StartRunsResponse,
                    )
                )
            )
            async with contextlib.aclosing(cast(AsyncGenerator[StartRunsResponse], call)) as stream:
                async for response in stream:
                    self._answer(response)
        except TrineError as exc:
            failure = exc
        except _Unimplemented as exc:
            self._owner.refused()
            failure = exc
        except asyncio.CancelledError:
            failure = Unavailable(f"{self._peer.address}: the StartRuns stream was closed")
        except Exception as exc:  # every start waiting is told, as Unavailable
            failure = Unavailable(f"{self._peer.address}: StartRuns: {type(exc).__name__}: {exc}")
        finally:
            self.ended = True
            self._outbox.put_nowait(None)
            pending, self._pending = self._pending, {}
            for waiting in pending.values():
                if not waiting.done():
                    waiting.set_exception(failure)

    def _answer(self, response: StartRunsResponse) -> None:
        for answer in response.answers:
            waiting = self._pending.pop(answer.id, None)
            if waiting is None or waiting.done():
                continue  # its caller gave up (deadline, cancelled)
            if answer.error:
                waiting.set_exception(from_json(answer.error, self._peer.address))
            else:
                waiting.set_result(answer.response or StartRunResponse())

    def close(self) -> None:
        self._task.cancel()


class RemoteWorkerRegistry:
    """A :class:`~trine_core.WorkerRegistry` served by another process (a coordinator)."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    async def list_workers(self, message: ListWorkersRequest) -> ListWorkersResponse:
        return await self._peer.unary(
            lambda ch, t: WorkerRegistryStub(ch).list_workers(message, timeout=t)
        )


if TYPE_CHECKING:  # mypy checks here that the clients satisfy the contracts

    def _conforms(peer: Peer) -> tuple[Backend, Dispatcher, WorkerRegistry]:
        return RemoteBackend(peer), RemoteDispatcher(peer), RemoteWorkerRegistry(peer)
