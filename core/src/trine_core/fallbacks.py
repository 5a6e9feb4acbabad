"""``Dispatcher`` methods for a dispatcher without a path of its own for them, built on the
older methods: ``report_batch`` as one ``report`` per report (:func:`report_each`), and
``take_work_stream`` as ``take_work`` long-polls (:func:`take_work_polling`).

A fake, a test double or a third party's dispatcher answers with these, and the grpc client
falls back to them against an engine from before ``ReportBatch`` / ``TakeWorkStream``. They give
the same answers as the real thing (one per report, in order, a refusal failing no other
report; runs never beyond the credit granted) without its savings (one shared commit; no call
per dispatch).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from trine_core.errors import TrineError
from trine_proto.trine.v1 import (
    ReportBatchRequest,
    ReportBatchResponse,
    ReportRequest,
    ReportResponse,
    ReportResult,
    TakeWorkRequest,
    TakeWorkResponse,
)

POLL_WAIT_MS = 1_000
"""How long each ``take_work`` of :func:`take_work_polling` waits (the coordinator's old
long-poll): the longest a stream whose requests ended may still hold a call open."""


async def report_each(
    report: Callable[[ReportRequest], Awaitable[ReportResponse]], message: ReportBatchRequest
) -> ReportBatchResponse:
    """Call ``report`` for every report of ``message`` and answer each with its response or its
    refusal. Different runs' reports go concurrently (as a coordinator forwarding them one by
    one would: a slow report holds up no other run's); one run's reports go one after the
    other in batch order, as its worker sent them: a step's result must be applied before the
    report that follows it (the run's completion, the next step's start). An error that is
    not a TrineError becomes that report's ``internal`` refusal rather than failing its
    neighbours."""
    by_run: dict[str, list[int]] = {}
    for index, each in enumerate(message.reports):
        by_run.setdefault(each.run_id, []).append(index)
    results: list[ReportResult] = [ReportResult() for _ in message.reports]

    async def in_order(indexes: list[int]) -> None:
        for index in indexes:
            results[index] = await _answer(report, message.reports[index])

    await asyncio.gather(*(in_order(indexes) for indexes in by_run.values()))
    return ReportBatchResponse(results=results)


async def _answer(
    report: Callable[[ReportRequest], Awaitable[ReportResponse]], message: ReportRequest
) -> ReportResult:
    try:
        return ReportResult(response=await report(message))
    except TrineError as exc:
        return refused(exc)
    except Exception as exc:
        return refused(TrineError(f"{type(exc).__name__}: {exc}"))


def refused(exc: TrineError) -> ReportResult:
    """A refused report's result in a batch: its code and message, as ``ReportAck`` carries a
    refusal (nothing of that report changed)."""
    return ReportResult(error_code=exc.code, error_message=exc.message)


async def take_work_polling(
    take_work: Callable[[TakeWorkRequest], Awaitable[TakeWorkResponse]],
    requests: AsyncIterator[TakeWorkRequest],
) -> AsyncIterator[TakeWorkResponse]:
    """``take_work_stream`` as ``take_work`` long-polls of ``POLL_WAIT_MS``, each asking for the
    credit granted and not yet used, with the first request's worker, functions, build and TTL.
    Ends when ``requests`` end (after the long-poll under way, whose runs it still yields)."""
    first = await anext(requests, None)
    if first is None:
        return
    credit = first.max_items
    granted = asyncio.Event()
    ended = False

    async def read() -> None:
        nonlocal credit, ended
        try:
            async for request in requests:
                credit += request.max_items
                granted.set()
        finally:
            ended = True
            granted.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            if credit <= 0:
                if ended:
                    return
                granted.clear()
                await granted.wait()
                continue
            asked = TakeWorkRequest(
                worker_id=first.worker_id,
                functions=first.functions,
                max_items=credit,
                wait_ms=POLL_WAIT_MS,
                lease_ttl_ms=first.lease_ttl_ms,
                build_id=first.build_id,
            )
            response = await take_work(asked)
            if response.items:
                credit -= len(response.items)
                yield response
            elif ended:
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
