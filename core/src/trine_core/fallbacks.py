"""``Dispatcher`` methods for a dispatcher without a path of its own for them, built on the
older methods: ``report_batch`` as one ``report`` per report (:func:`report_each`), and
``take_work_stream`` as ``take_work`` long-polls (:func:`take_work_polling`).

A fake, a test double or a third party's dispatcher answers with these, and the grpc client
falls back to them against an engine from before ``ReportBatch`` / ``TakeWorkStream``. They give
the same answers as the real thing (one per report, in order, a refusal failing no other
report; runs never beyond the credit granted) without its savings (one shared commit; no call
per dispatch). :class:`WorkCredit`, the credit a work stream's requests grant, is kept here by
``take_work_polling`` and by the engine's own stream alike.
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


class WorkCredit:
    """What a ``take_work_stream``'s requests granted and its runs have not used yet: the first
    request's ``max_items``, plus each later request's, as :meth:`read` sees them. The engine's
    stream and :func:`take_work_polling` both keep it."""

    def __init__(self, first: int) -> None:
        self.left = first
        self.ended = False
        self._granted = asyncio.Event()

    async def read(self, requests: AsyncIterator[TakeWorkRequest]) -> None:
        """Add each request's credit until the requests end. Requests that break (the stream
        under them failed) end as if they had ended: their taker stops leasing."""
        try:
            async for request in requests:
                self.left += request.max_items
                self._granted.set()
        except Exception:
            pass
        finally:
            self.ended = True
            self._granted.set()

    async def more(self, timeout_s: float | None = None) -> None:
        """Return once more credit came, the requests ended, or after ``timeout_s`` (a taker
        that must look at something else now and then: the engine's log closing)."""
        self._granted.clear()
        if self.left <= 0 and not self.ended:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._granted.wait()


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
    credit = WorkCredit(first.max_items)
    reader = asyncio.create_task(credit.read(requests))
    try:
        while True:
            if credit.left <= 0:
                if credit.ended:
                    return
                await credit.more()
                continue
            asked = TakeWorkRequest(
                worker_id=first.worker_id,
                functions=first.functions,
                max_items=credit.left,
                wait_ms=POLL_WAIT_MS,
                lease_ttl_ms=first.lease_ttl_ms,
                build_id=first.build_id,
            )
            response = await take_work(asked)
            if response.items:
                credit.left -= len(response.items)
                yield response
            elif credit.ended:
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
