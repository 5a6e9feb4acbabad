"""``Dispatcher.report_batch`` for a dispatcher without a batch path of its own: each report
through ``report``, all at once, each answered with its own result.

A fake, a test double or a third party's dispatcher answers ``report_batch`` with this, and the
grpc client falls back to it against an engine from before ``ReportBatch``. It gives the same
answers as a real batch (one per report, in order, a refusal failing no other report) without
its one shared commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from trine_core.errors import TrineError
from trine_proto.trine.v1 import (
    ReportBatchRequest,
    ReportBatchResponse,
    ReportRequest,
    ReportResponse,
    ReportResult,
)


async def report_each(
    report: Callable[[ReportRequest], Awaitable[ReportResponse]], message: ReportBatchRequest
) -> ReportBatchResponse:
    """Call ``report`` for every report of ``message`` concurrently (as a coordinator forwarding
    them one by one would: a slow report holds up no other's call), and answer each with its
    response or its refusal. An error that is not a TrineError becomes that report's
    ``internal`` refusal rather than failing its neighbours."""
    answers = await asyncio.gather(
        *(report(each) for each in message.reports), return_exceptions=True
    )
    results: list[ReportResult] = []
    for answer in answers:
        if isinstance(answer, ReportResponse):
            results.append(ReportResult(response=answer))
        elif isinstance(answer, TrineError):
            results.append(refused(answer))
        elif isinstance(answer, Exception):
            results.append(refused(TrineError(f"{type(answer).__name__}: {answer}")))
        else:  # CancelledError and the like: not a report's answer
            raise answer
    return ReportBatchResponse(results=results)


def refused(exc: TrineError) -> ReportResult:
    """A refused report's result in a batch: its code and message, as ``ReportAck`` carries a
    refusal (nothing of that report changed)."""
    return ReportResult(error_code=exc.code, error_message=exc.message)
