"""Serving local ``Backend``, ``Dispatcher`` and ``WorkerRegistry`` implementations over gRPC.

The generated service bases (``BackendBase``, ``DispatcherBase``, ``WorkerRegistryBase``) are
subclassed once each, every contract method forwarding to the implementation served for that
contract and turning its TrineError into a gRPC status; a contract not served (yet) answers
UNIMPLEMENTED. One grpclib server per listen address carries all three.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpclib
from grpclib.const import Status
from grpclib.health.service import Health
from grpclib.server import Server

from trine_core import (
    MAX_PAYLOAD_BYTES,
    Backend,
    Dispatcher,
    TrineError,
    Unavailable,
    WorkerRegistry,
    cannot_listen,
    contract_name,
)
from trine_proto.limits import BoundedCodec, derived_limit
from trine_proto.trine.v1 import (
    BackendBase,
    CancelRunRequest,
    DispatcherBase,
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
    StartRunsAnswer,
    StartRunsItem,
    StartRunsRequest,
    StartRunsResponse,
    SubscribeRequest,
    TakeWorkRequest,
    TakeWorkResponse,
    WaitRunRequest,
    WorkerRegistryBase,
)
from trine_transport_grpc.errors import to_grpc

R = TypeVar("R")


class Served:
    """What one server serves, filled in as roles start (the server listens before)."""

    def __init__(self) -> None:
        self.backend: Backend | None = None
        self.dispatcher: Dispatcher | None = None
        self.worker_registry: WorkerRegistry | None = None
        self.closing = False  # the server is stopping: it, not a lost caller, cancels handlers


def _missing(contract: type) -> grpclib.GRPCError:
    return grpclib.GRPCError(Status.UNIMPLEMENTED, f"{contract_name(contract)} is not served here")


async def _answer(call: Awaitable[R]) -> R:
    try:
        return await call
    except TrineError as exc:
        raise to_grpc(exc) from None


class ServedBackend(BackendBase):
    def __init__(self, served: Served) -> None:
        self._served = served

    def _backend(self) -> Backend:
        if self._served.backend is None:
            raise _missing(Backend)
        return self._served.backend

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        return await _answer(self._backend().start_run(message))

    async def start_runs(
        self, messages: AsyncIterator[StartRunsRequest]
    ) -> AsyncIterator[StartRunsResponse]:
        """Every start read is run at once, concurrently; the answers ready when the stream
        is next written go in one message. Ends once the caller ended its side and every start
        was answered; when the caller goes away, the starts under way are cancelled, as a
        cancelled StartRun call's are."""
        backend = self._backend()
        ready: asyncio.Queue[StartRunsAnswer | None] = asyncio.Queue()
        under_way: set[asyncio.Task[None]] = set()

        async def start(item: StartRunsItem) -> None:
            try:
                response = await backend.start_run(item.request or StartRunRequest())
            except TrineError as exc:
                ready.put_nowait(StartRunsAnswer(id=item.id, error=json.dumps(exc.to_dict())))
            except Exception as exc:  # one start's failure is its own answer
                failed = TrineError(f"{type(exc).__name__}: {exc}")
                ready.put_nowait(StartRunsAnswer(id=item.id, error=json.dumps(failed.to_dict())))
            else:
                ready.put_nowait(StartRunsAnswer(id=item.id, response=response))

        async def read() -> None:
            try:
                async for message in messages:
                    for item in message.starts:
                        task = asyncio.create_task(start(item))
                        under_way.add(task)
                        task.add_done_callback(under_way.discard)
                if under_way:
                    await asyncio.wait(set(under_way))
            finally:
                ready.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                first = await ready.get()
                if first is None:
                    break
                answers = [first]
                while not ready.empty():
                    more = ready.get_nowait()
                    if more is None:
                        ready.put_nowait(None)
                        break
                    answers.append(more)
                yield StartRunsResponse(answers=answers)
            await reader  # raises what reading the requests raised
        except asyncio.CancelledError:
            if not self._served.closing:
                # The caller's connection is gone (or it reset the stream): grpclib ends the
                # stream, and logs a handler that does not let the cancellation through as
                # "Failed to handle cancellation", with a traceback.
                raise
            # The server is closing: end the stream with a status rather than leave the
            # caller's stream open on a connection that lives on.
            gone = Unavailable("the engine stopped serving StartRuns (it is stopping)")
            raise to_grpc(gone) from None
        finally:
            reader.cancel()
            for task in list(under_way):
                task.cancel()

    async def get_run(self, message: GetRunRequest) -> Run:
        return await _answer(self._backend().get_run(message))

    async def wait_run(self, message: WaitRunRequest) -> Run:
        return await _answer(self._backend().wait_run(message))

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        return await _answer(self._backend().list_runs(message))

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        try:
            async for event in self._backend().subscribe(message):
                yield event
        except TrineError as exc:
            raise to_grpc(exc) from None

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        return await _answer(self._backend().cancel_run(message))

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        return await _answer(self._backend().signal_run(message))

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        return await _answer(self._backend().get_journal(message))

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        return await _answer(self._backend().list_functions(message))

    async def retry_run(self, message: RetryRunRequest) -> Run:
        return await _answer(self._backend().retry_run(message))

    async def move_run(self, message: MoveRunRequest) -> Run:
        return await _answer(self._backend().move_run(message))

    async def list_builds(self, message: ListBuildsRequest) -> ListBuildsResponse:
        return await _answer(self._backend().list_builds(message))


class ServedDispatcher(DispatcherBase):
    def __init__(self, served: Served) -> None:
        self._served = served

    def _dispatcher(self) -> Dispatcher:
        if self._served.dispatcher is None:
            raise _missing(Dispatcher)
        return self._served.dispatcher

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        return await _answer(self._dispatcher().register_functions(message))

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        return await _answer(self._dispatcher().take_work(message))

    async def take_work_stream(
        self, messages: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        try:
            async for response in self._dispatcher().take_work_stream(messages):
                yield response
        except TrineError as exc:
            raise to_grpc(exc) from None

    async def report(self, message: ReportRequest) -> ReportResponse:
        return await _answer(self._dispatcher().report(message))

    async def report_batch(self, message: ReportBatchRequest) -> ReportBatchResponse:
        return await _answer(self._dispatcher().report_batch(message))

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        return await _answer(self._dispatcher().renew_leases(message))

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        return await _answer(self._dispatcher().release_leases(message))


class ServedWorkerRegistry(WorkerRegistryBase):
    def __init__(self, served: Served) -> None:
        self._served = served

    def _registry(self) -> WorkerRegistry:
        if self._served.worker_registry is None:
            raise _missing(WorkerRegistry)
        return self._served.worker_registry

    async def list_workers(self, message: ListWorkersRequest) -> ListWorkersResponse:
        return await _answer(self._registry().list_workers(message))


class ContractServer:
    """A grpclib server on one address, serving whichever contracts are given to it; over TLS
    with ``tls`` (from :func:`trine_core.tls.server_context`: mutual with ``[tls] ca``)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        max_message_bytes: int = derived_limit(MAX_PAYLOAD_BYTES.default),
    ) -> None:
        """``max_message_bytes``: a larger request is refused (``RESOURCE_EXHAUSTED``) from its
        length prefix, before its body is read (:mod:`trine_proto.limits`)."""
        self.host, self.port = host, port
        self._ssl = tls
        self.served = Served()
        # The standard gRPC health service beside ours; messages through trine_proto's codec.
        self._server = Server(
            [
                ServedBackend(self.served),
                ServedDispatcher(self.served),
                ServedWorkerRegistry(self.served),
                Health(),
            ],
            codec=BoundedCodec(max_message_bytes),
        )
        self._started = False

    async def start(self, what: str = "backend/dispatcher") -> None:
        """Listen; ``what`` names what is served in the error when the address is taken."""
        try:
            await self._server.start(self.host, self.port, ssl=self._ssl)
        except OSError as exc:
            where = f"{self.host}:{self.port} for {what}"
            raise cannot_listen("grpc", where, exc) from None
        self._started = True

    async def close(self) -> None:
        if self._started:
            self.served.closing = True
            self._server.close()
            await self._server.wait_closed()
