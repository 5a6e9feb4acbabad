"""The contracts between roles: ``Backend`` (gateway → engine), ``Dispatcher``
(coordinator → engine) and ``WorkerRegistry`` (gateway → coordinator).

They take and return the messages generated from ``proto/``. A role in the same process as the
engine gets the engine's own objects (nothing is serialized); across processes a transport serves
them and gives the caller a client with these very methods. Method names and signatures match the
generated gRPC stubs, so a remote client is the stub plus error mapping. Roles ask for them by
class (``context.need(Backend)``).

Every method may raise a :class:`trine_core.errors.TrineError`; transports carry it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from trine_proto.trine.v1 import (
    CancelRunRequest,
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
    SubscribeRequest,
    TakeWorkRequest,
    TakeWorkResponse,
    WaitRunRequest,
)


@runtime_checkable
class Backend(Protocol):
    """What the gateway needs of the engine."""

    async def start_run(self, message: StartRunRequest) -> StartRunResponse:
        """Accept a run durably and return it; with an idempotency key already used, the earlier
        run with ``created=False``. Raises UnknownFunction, PayloadTooLarge, InvalidArgument.

        With ``wait_ms``, an implementation may then wait for the run as ``wait_run`` does, in
        the same call, and answer ``waited=True`` (the engine does: one call for the gateway's
        ``POST /v1/runs?wait``). One that answers at once, ``waited=False`` (a fake, an engine
        from before the field), is as correct: the caller then waits with ``wait_run``."""
        ...

    async def get_run(self, message: GetRunRequest) -> Run:
        """The run as it is now. Raises RunNotFound."""
        ...

    async def wait_run(self, message: WaitRunRequest) -> Run:
        """The run once it reached a final state, or as it is when ``wait_ms`` runs out."""
        ...

    async def list_runs(self, message: ListRunsRequest) -> ListRunsResponse:
        """Runs in creation order, filtered by status and function, one page at a time."""
        ...

    def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Event]:
        """The run's events after ``after_seq``, then live ones; ends after the final event."""
        ...

    async def cancel_run(self, message: CancelRunRequest) -> Run:
        """Cancel the run wherever it is, and its children. A run that never started ends at
        once; any other is told (``cancel_requested``), may clean up, and is forced to
        ``cancelled`` at ``cancel_deadline_ms``. Raises RunNotFound, RunFinished."""
        ...

    async def signal_run(self, message: SignalRunRequest) -> SignalRunResponse:
        """Deliver a signal to the run's wait for it, or keep it until the run waits.
        Raises RunNotFound, RunFinished, InvalidArgument, PayloadTooLarge."""
        ...

    async def get_journal(self, message: GetJournalRequest) -> GetJournalResponse:
        """The run's journal: one entry per completed or finally failed step, and per wait
        (sleep, signal, child run; ``pending`` until it resolves)."""
        ...

    async def list_functions(self, message: ListFunctionsRequest) -> ListFunctionsResponse:
        """Every function a worker ever registered (this survives restarts)."""
        ...

    async def retry_run(self, message: RetryRunRequest) -> Run:
        """Resume a failed (or timed out) or blocked run from its journal, cut at its first
        failed entry so that the failed step runs again; the run is pending again with the same
        id. Raises RunNotFound, and RunNotRetryable for a run in any other state."""
        ...

    async def move_run(self, message: MoveRunRequest) -> Run:
        """Make a not-final run continue only on ``build_id`` (a pinned run's way off a build
        that is gone). Raises RunNotFound, RunFinished, and UnknownBuild for a build no worker
        registered the run's function with."""
        ...

    async def list_builds(self, message: ListBuildsRequest) -> ListBuildsResponse:
        """Every build the engine knows of: the functions its workers registered, its open
        runs, and whether a worker of it asks for work now."""
        ...


@runtime_checkable
class Dispatcher(Protocol):
    """What the coordinator needs of the engine."""

    async def register_functions(
        self, message: RegisterFunctionsRequest
    ) -> RegisterFunctionsResponse:
        """Record durably that these functions exist, with their retry policies."""
        ...

    async def take_work(self, message: TakeWorkRequest) -> TakeWorkResponse:
        """Lease up to ``max_items`` ready runs of the given functions, waiting up to ``wait_ms``
        when none is ready. Each item carries a fresh lease and the journal to replay."""
        ...

    def take_work_stream(
        self, requests: AsyncIterator[TakeWorkRequest]
    ) -> AsyncIterator[TakeWorkResponse]:
        """Dispatch as a stream, for one worker session: the first request names the worker,
        functions, build and lease TTL; every request (the first too) grants ``max_items`` more
        runs. Runs are leased and sent as they become ready (each response one or more items,
        each as ``take_work`` makes them), never more than granted and not yet sent, so the
        caller grants what it has slots for and is never sent a run it has no slot for. Ends
        when ``requests`` end (the caller drained or left) or the engine stops. Items sent when
        the stream broke, which the caller may not have received, keep their leases until they
        expire (their runs are then dispatched again), as a lost ``take_work`` answer's do. The
        coordinator's way to take work; ``take_work`` stays for older callers."""
        ...

    async def report(self, message: ReportRequest) -> ReportResponse:
        """Journal a worker's commands for a run, durably, under its lease. Raises LeaseLost when
        the lease is no longer current; then nothing changed."""
        ...

    async def report_batch(self, message: ReportBatchRequest) -> ReportBatchResponse:
        """Journal several reports at once, each exactly as ``report`` would: under its own
        lease, in the request's order (reports of one run are applied in the order sent), each
        with its own answer in ``ReportBatchResponse.results`` (its response, or the error code
        and message it was refused with; a refused report changed nothing and fails no other).
        Called by the coordinator with every report its workers sent in one turn of its loop, so
        a batch costs one call and one synced commit, not one of each per report. Returns once
        every accepted report is durable. Raises only when the call as a whole failed (the
        engine unreachable); then the caller cannot know which reports were journaled and
        treats each as unanswered."""
        ...

    async def renew_leases(self, message: RenewLeasesRequest) -> RenewLeasesResponse:
        """Extend leases; answers which of them are no longer current."""
        ...

    async def release_leases(self, message: ReleaseLeasesRequest) -> ReleaseLeasesResponse:
        """Give leases back (worker gone or drained): their runs are dispatched again at once."""
        ...


@runtime_checkable
class WorkerRegistry(Protocol):
    """What the gateway asks a coordinator about the workers connected to it. The gateway only
    *wants* it (``Role.wants``): it boots without a coordinator, and lists the workers of every
    coordinator wired to it."""

    async def list_workers(self, message: ListWorkersRequest) -> ListWorkersResponse:
        """The workers connected now, in worker_id order, each with its functions, capacity and
        runs in flight (oldest first, at most ``max_runs`` of them listed; ``in_flight`` counts
        all), and the coordinator that answered."""
        ...
