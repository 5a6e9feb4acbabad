"""Reports from every worker stream, relayed to the engine one ``report_batch`` call per turn.

The reports read in one turn of the event loop (a worker's ``WorkerReports`` batch, and whatever
other workers sent meanwhile) go to the engine as one ``Dispatcher.report_batch``: in a split
deployment one gRPC call instead of one per report, and one group commit in the engine (it
appends a batch's records with no await in between). Each report keeps its own lease fencing
and its own answer, handed to ``answer`` with the ticket it was added with.

A batch's call runs in a task of its own, so the next turn's reports go out while the engine
commits this one (the engine's group commit gathers the next batch during the fsync): a slow
batch holds up its own reports only. Order is kept where it matters: a stream's reports are
added in the order read, a batch keeps that order, and the SDK never has two reports carrying
journal entries of one run in flight at once (docs/internals.md, "What an ack promises").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

import structlog

from trine_core import Dispatcher, TrineError
from trine_proto.sizes import report_size
from trine_proto.trine.v1 import ReportBatchRequest, ReportRequest, ReportResult
from trine_proto.vocabulary import TRANSIENT_CODES, ErrorCode

T = TypeVar("T")

MAX_BATCH = 256
"""Reports in one ``report_batch`` call at most (as in a worker's ``WorkerReports``)."""
MAX_BATCH_BYTES = 1 << 20
"""About how many payload bytes one call carries at most (a worker's batch is capped the same,
a quarter of the smallest message limit): a report that would pass it starts the next call."""

Answer = Callable[[T, ReportResult], None]
"""What becomes of one report: the engine's result for it, or, when the call failed as a whole,
a transient refusal of it (``_unanswered``)."""


class ReportRelay(Generic[T]):
    """Gathers the reports of one turn into one ``report_batch`` call and answers each report on
    its own.

    Batching is what makes a busy coordinator cheap for the engine (one call and one synced
    commit per turn, not one per report), but a worker waits on each report's ack, so every
    report added must get exactly one answer, whatever becomes of its call: a result, or a
    transient refusal that starts its worker over when nothing is known of it.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        answer: Answer[T],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        """``spawn`` runs each call as a task the owner awaits when it stops."""
        self._dispatcher = dispatcher
        self._answer = answer
        self._spawn = spawn
        self._log = log
        self._gathered: list[tuple[T, ReportRequest]] = []
        self._bytes = 0

    def add(self, ticket: T, report: ReportRequest) -> None:
        """Queue ``report`` for this turn's call (sent at the end of the turn, or at once when
        this one makes the call full)."""
        if not self._gathered:
            asyncio.get_running_loop().call_soon(self.flush)
        weight = _weight(report)
        if self._gathered and (
            len(self._gathered) >= MAX_BATCH or self._bytes + weight > MAX_BATCH_BYTES
        ):
            self.flush()  # the flush already scheduled sends the rest
        self._gathered.append((ticket, report))
        self._bytes += weight

    def flush(self) -> None:
        """Send what is gathered, if anything, as one call."""
        gathered, self._gathered, self._bytes = self._gathered, [], 0
        if gathered:
            self._spawn(self._call(gathered))

    async def _call(self, gathered: list[tuple[T, ReportRequest]]) -> None:
        """One call for ``gathered``, then each report answered: a call that fails as a whole
        (the engine unreachable, a transport error, an answer that does not match the request)
        still answers every report, so no worker waits forever on an ack."""
        request = ReportBatchRequest(reports=[report for _, report in gathered])
        try:
            response = await self._dispatcher.report_batch(request)
            results = list(response.results)
            if len(results) != len(gathered):
                raise TrineError(
                    f"the engine answered {len(results)} results for {len(gathered)} reports"
                )
        except Exception as exc:
            if not (isinstance(exc, TrineError) and exc.code in TRANSIENT_CODES):
                # The engine being away is said elsewhere (health, take_work); anything else is
                # news, in one line: a traceback per turn would bury it.
                self._log.warning(
                    "report batch failed as a whole; each of its reports is answered unavailable",
                    reports=len(gathered),
                    error=repr(exc),
                )
            results = _unanswered(exc, len(gathered))
        for (ticket, _), result in zip(gathered, results, strict=True):
            self._answer(ticket, result)


def _unanswered(error: Exception, count: int) -> list[ReportResult]:
    """The answer to each of ``count`` reports whose call failed as a whole with ``error``.

    Whether the engine journaled any of them is unknown, and only a transient code says so to
    the worker: it starts its stream over, so the run is dispatched again and replays from what
    is durable. Any other code would be taken as the engine's word on the report (the SDK fails
    the run on it) for an error that is not the run's. A transient code the error carries
    (``storage_error``) is kept, as the engine said it; anything else is ``unavailable``.
    """
    if isinstance(error, TrineError) and error.code in TRANSIENT_CODES:
        code, message = error.code, error.message
    else:
        why = (
            f"{error.code}: {error.message}"
            if isinstance(error, TrineError)
            else f"{type(error).__name__}: {error}"
        )
        code, message = ErrorCode.UNAVAILABLE, f"the report batch failed as a whole: {why}"
    return [ReportResult(error_code=code, error_message=message) for _ in range(count)]


def _weight(report: ReportRequest) -> int:
    """About how many bytes ``report`` takes encoded, its envelope included (not encoded to find
    out: that is what batching saves)."""
    return 64 + report_size(report)
