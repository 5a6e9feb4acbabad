"""One open worker stream: an ordered outbox, and report acknowledgements matched by request id.

A single writer task drains the outbox, so every message (reports of all runs, heartbeats) goes
out in the order it was queued and queuing never blocks: that is what lets a step send
``StepStarted`` without waiting and still have its reports arrive in order. Reports queued while
the writer was busy (the runs of one turn of the loop, or of the time the last send took) go out
as one ``WorkerReports`` message when the coordinator reads those (``batches``): one message to
encode, frame and decode instead of one per report, and in the engine one group commit. Acks come
back on the reader side, alone or batched, and resolve the future of their ``request_id``.

Futures resolve to the ``ReportAck`` itself, refusals included, rather than to an exception: a
report whose ack nobody awaits (its run was cancelled) must not log "exception never retrieved".
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from trine_proto.sizes import report_size
from trine_proto.trine.v1 import (
    Command,
    ReportAck,
    ReportRequest,
    WorkerMessage,
    WorkerReport,
    WorkerReports,
)

from .transport import CoordinatorStream

log = logging.getLogger("trine.worker")

# A WorkerReports message holds at most this many reports, of about this many bytes together (a
# report over it goes alone): a quarter of the smallest message limit a coordinator derives
# (trine_proto.limits), which the worker does not know.
MAX_BATCH = 256
MAX_BATCH_BYTES = 1 << 20


class Session:
    """The send side and ack bookkeeping of one stream to the coordinator (a
    :class:`~trine.transport.CoordinatorStream`, open)."""

    def __init__(self, stream: CoordinatorStream) -> None:
        self._stream = stream
        self._outbox: asyncio.Queue[WorkerMessage | None] = asyncio.Queue()
        self._acks: dict[int, asyncio.Future[ReportAck]] = {}
        self._request_ids = itertools.count(1)
        self._closed = False
        self._aborted: asyncio.Event = asyncio.Event()
        self.abort_reason = ""
        self.batches = False  # the coordinator reads WorkerReports (its Registered says so)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def aborted(self) -> asyncio.Event:
        """Set when a run asked to start the session over (the engine was unavailable)."""
        return self._aborted

    def send(self, message: WorkerMessage) -> None:
        """Queue ``message``; it goes out after everything queued before it."""
        if not self._closed:
            self._outbox.put_nowait(message)

    def report(self, run_id: str, lease_id: str, *commands: Command) -> asyncio.Future[ReportAck]:
        """Queue a report and return the future of its ack (cancelled if the stream ends first)."""
        future: asyncio.Future[ReportAck] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.cancel()
            return future
        request_id = next(self._request_ids)
        self._acks[request_id] = future
        self._outbox.put_nowait(
            WorkerMessage(
                report=WorkerReport(
                    request_id=request_id,
                    report=ReportRequest(run_id=run_id, lease_id=lease_id, commands=list(commands)),
                )
            )
        )
        return future

    def on_ack(self, ack: ReportAck) -> None:
        """Resolve the future of the report ``ack`` answers; unknown ids are ignored."""
        future = self._acks.pop(ack.request_id, None)
        if future is not None and not future.done():
            future.set_result(ack)

    def end(self) -> None:
        """Half-close the stream once everything queued so far has been sent."""
        if not self._closed:
            self._outbox.put_nowait(None)

    def abort(self, reason: str) -> None:
        """Ask the worker to drop this stream and connect again (releasing every lease)."""
        if not self._aborted.is_set():
            self.abort_reason = reason
            self._aborted.set()

    def close(self) -> None:
        """The stream is gone: cancel every pending ack and refuse further messages."""
        self._closed = True
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()

    async def write_loop(self) -> None:
        """Send queued messages in order until ``end()``; a send error ends the loop with it.
        Consecutive reports already queued go as one message (``batches``)."""
        taken: list[WorkerMessage | None] = []  # taken from the outbox, to go out next
        while True:
            message = taken.pop(0) if taken else await self._outbox.get()
            if message is None:
                await self._stream.end()
                return
            if message.report is None or not self.batches or self._outbox.empty():
                await self._stream.send(message)
                continue
            reports = [message.report]
            size = weight(message.report)
            while len(reports) < MAX_BATCH and not self._outbox.empty():
                queued = self._outbox.get_nowait()
                if queued is None or queued.report is None:
                    taken.append(queued)  # a heartbeat, a drain, the end: after the batch
                    break
                size += weight(queued.report)
                if size > MAX_BATCH_BYTES:
                    taken.append(queued)  # it starts the next message
                    break
                reports.append(queued.report)
            if len(reports) == 1:
                await self._stream.send(message)
            else:
                await self._stream.send(WorkerMessage(reports=WorkerReports(reports)))


def weight(report: WorkerReport) -> int:
    """About how many bytes ``report`` takes encoded (:func:`trine_proto.sizes.report_size`)."""
    return report_size(report.report) if report.report is not None else 0


class RunReporter:
    """What a run's context needs of the session: reports under the run's lease."""

    def __init__(self, session: Session, run_id: str, lease_id: str) -> None:
        self.session = session
        self.run_id = run_id
        self.lease_id = lease_id

    def send(self, *commands: Command) -> asyncio.Future[ReportAck]:
        return self.session.report(self.run_id, self.lease_id, *commands)
