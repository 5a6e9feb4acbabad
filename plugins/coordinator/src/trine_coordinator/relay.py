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

T = TypeVar("T")

MAX_BATCH = 256
"""Reports in one ``report_batch`` call at most (as in a worker's ``WorkerReports``)."""
MAX_BATCH_BYTES = 1 << 20
"""About how many payload bytes one call carries at most (a worker's batch is capped the same,
a quarter of the smallest message limit): a report that would pass it starts the next call."""

Answer = Callable[[T, ReportResult | Exception], None]
"""What becomes of one report: its result, or the error the whole call failed with (the engine
unreachable: then it is unknown whether the report was journaled)."""


class ReportRelay(Generic[T]):
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
        request = ReportBatchRequest(reports=[report for _, report in gathered])
        try:
            response = await self._dispatcher.report_batch(request)
            results: list[ReportResult | Exception] = list(response.results)
            if len(results) != len(gathered):
                raise TrineError(
                    f"the engine answered {len(results)} results for {len(gathered)} reports"
                )
        except TrineError as exc:
            results = [exc] * len(gathered)
        except Exception as exc:
            self._log.exception("report batch failed", reports=len(gathered))
            results = [exc] * len(gathered)
        for (ticket, _), result in zip(gathered, results, strict=True):
            self._answer(ticket, result)


def _weight(report: ReportRequest) -> int:
    """About how many bytes ``report`` takes encoded, its envelope included (not encoded to find
    out: that is what batching saves)."""
    return 64 + report_size(report)
