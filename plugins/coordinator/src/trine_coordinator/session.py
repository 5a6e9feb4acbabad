"""One connected worker: what it serves, what it holds, and the messages queued for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trine_coordinator.admission import Credential
from trine_core import TrineError
from trine_proto.trine.v1 import (
    CancelNotice,
    CoordinatorMessage,
    ReportAck,
    ReportAcks,
    WorkItem,
    WorkItems,
)
from trine_proto.vocabulary import now_ms

M = TypeVar("M")

MAX_BATCH = 256
"""Acks or dispatches in one ``ReportAcks`` / ``WorkItems`` message at most."""


@dataclass
class Flight:
    """What the worker registry shows of a run in flight besides its id (``in_flight`` holds the
    lease): its function, when it was dispatched here, and the lease's attempt."""

    function: str
    since_ms: int
    attempt: int


@dataclass(eq=False)
class WorkerSession:
    """A worker's stream, from Register until it ends for any reason.

    ``in_flight`` maps run id → lease id for every run dispatched to this worker and not yet
    finished; it is the capacity count and, when the session ends, the list of leases to give
    back so those runs are dispatched again at once.
    """

    worker_id: str
    session_id: str
    functions: list[str]
    max_concurrency: int
    in_flight: dict[str, str] = field(default_factory=dict)
    draining: bool = False
    told_unavailable: bool = False
    """A report was answered with a transient code (``unavailable``, ``storage_error``): the
    worker starts its stream over (its runs are dispatched again), the engine's doing rather than
    a lost worker."""
    closed: bool = False
    close_reason: str = ""
    refusal: TrineError | None = None
    """What the stream ends with instead of ending normally (its token was revoked)."""
    sdk_version: str = ""
    build_id: str = ""
    """The build the worker registered with ("" from an SDK before builds: an unknown build). It
    goes with every take_work of this session, so a pinned run reaches only a worker of its
    build (each session takes work for itself, never pooled with another worker's)."""
    credential: Credential | None = None
    """The token the stream was admitted with (None without a tokens file), checked again at
    each reload of the file: a session whose token was revoked is closed."""
    instance: str = ""
    """The worker's ``trine-worker-instance`` ("" from an SDK that sends none): a registration
    with the same one is this worker reconnecting, and replaces this session."""
    connected_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    last_heard_ms: int = field(default_factory=now_ms)
    """The wall-clock time of the last message read from the worker (``last_seen`` is monotonic
    and moved forward over the coordinator's own stalls, so it is not a time to show)."""
    flights: dict[str, Flight] = field(default_factory=dict)
    """Run id → what the worker registry shows of each run in ``in_flight``."""
    outbox: asyncio.Queue[CoordinatorMessage | None] = field(default_factory=asyncio.Queue)
    batches: bool = False
    """The worker reads ``ReportAcks`` and ``WorkItems`` (its Register says so): ``next_message``
    sends consecutive acks, and consecutive dispatches, as one message."""
    taken: list[CoordinatorMessage | None] = field(default_factory=list)
    """Taken from the outbox by ``next_message`` while gathering a batch, to go out next."""
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a slot frees or the session changes state, so the dispatch loop looks again."""
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    """The session's reader and dispatch loop, cancelled when the session ends."""
    cancel_notified: set[str] = field(default_factory=set)
    """Leases whose cancellation the worker was told of (once is enough)."""
    journal_lengths: dict[str, int] = field(default_factory=dict)
    """Run id → the journal length each run in flight was dispatched with (what a loss of this
    worker is measured against: see ``losses``)."""
    reporting: dict[str, int] = field(default_factory=dict)
    """Run id → reports of it being forwarded now that may end its attempt (a lease that ends
    meanwhile is that report's doing, not news)."""
    steps: dict[str, str] = field(default_factory=dict)
    """Run id → the step a run in flight reported as started and has not finished, to name it
    when the worker is lost."""

    @property
    def token_name(self) -> str:
        """The name of the token the worker presented ("" without a tokens file)."""
        return self.credential.name if self.credential is not None else ""

    @property
    def free_slots(self) -> int:
        if self.draining or self.closed:
            return 0
        return max(0, max(1, self.max_concurrency) - len(self.in_flight))

    def send(self, message: CoordinatorMessage) -> None:
        if not self.closed:
            self.outbox.put_nowait(message)

    async def next_message(self) -> CoordinatorMessage | None:
        """The next message to send (None: the stream ends). Acks (or dispatches) queued one
        after another while the last send was under way go as one message when the worker reads
        those: the acks of a turn of reports cost one message to frame and decode, not one
        each."""
        message = self.taken.pop(0) if self.taken else await self.outbox.get()
        if message is None or not self.batches or self.outbox.empty():
            return message
        if message.report_ack is not None:
            acks = self._gather(message.report_ack, _report_ack)
            if len(acks) > 1:
                return CoordinatorMessage(report_acks=ReportAcks(acks))
        elif message.dispatch is not None:
            items = self._gather(message.dispatch, _dispatch)
            if len(items) > 1:
                return CoordinatorMessage(dispatches=WorkItems(items))
        return message

    def _gather(self, first: M, part: Callable[[CoordinatorMessage], M | None]) -> list[M]:
        """``first`` and the ``part`` of every message queued right after it that holds one (at
        most ``MAX_BATCH``); the first message that holds none is kept in ``taken``, to go out
        next."""
        gathered = [first]
        while len(gathered) < MAX_BATCH and not self.outbox.empty():
            queued = self.outbox.get_nowait()
            value = part(queued) if queued is not None else None
            if value is None:
                self.taken.append(queued)
                break
            gathered.append(value)
        return gathered

    def finish(self, run_id: str, lease_id: str) -> None:
        """The run no longer holds a slot here (finished, suspended, retry scheduled, or lease
        lost)."""
        self.cancel_notified.discard(lease_id)
        if self.in_flight.get(run_id) == lease_id:
            del self.in_flight[run_id]
            self.flights.pop(run_id, None)
            self.journal_lengths.pop(run_id, None)
            self.steps.pop(run_id, None)
            self.wakeup.set()

    def notify_cancel(self, lease_id: str) -> None:
        """Tell the worker that the run it holds under ``lease_id`` is being cancelled."""
        if lease_id in self.cancel_notified:
            return
        run_id = next((r for r, lease in self.in_flight.items() if lease == lease_id), None)
        if run_id is not None:
            self.cancel_notified.add(lease_id)
            self.send(CoordinatorMessage(cancel=CancelNotice(run_id=run_id, lease_id=lease_id)))

    def dispatched(
        self, run_id: str, lease_id: str, journal_length: int, function: str = "", attempt: int = 0
    ) -> str | None:
        """The run now holds a slot here, under ``lease_id``; the lease of an older attempt of
        it this worker still held, if any (the engine ended that lease, or it would not have
        given another)."""
        older = self.in_flight.get(run_id)
        if older is not None:
            self.cancel_notified.discard(older)
        self.in_flight[run_id] = lease_id
        self.flights[run_id] = Flight(function, now_ms(), attempt)
        self.journal_lengths[run_id] = journal_length
        self.steps.pop(run_id, None)
        return older if older != lease_id else None

    def drain(self) -> None:
        self.draining = True
        self.wakeup.set()

    def close(self, reason: str) -> None:
        """End the stream: the outbox's end marker makes the response generator return."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.outbox.put_nowait(None)
            self.wakeup.set()

    def describe(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "functions": list(self.functions),
            "max_concurrency": self.max_concurrency,
            "build_id": self.build_id,
            "token": self.token_name,
            "in_flight": len(self.in_flight),
            "draining": self.draining,
            "connected_at": self.connected_at,
        }


def _report_ack(message: CoordinatorMessage) -> ReportAck | None:
    return message.report_ack


def _dispatch(message: CoordinatorMessage) -> WorkItem | None:
    return message.dispatch
