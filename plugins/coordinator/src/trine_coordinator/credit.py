"""A worker session's credit on its ``take_work_stream``: the engine sends a run only against a
slot the coordinator granted, so the coordinator is never sent work it has no worker slot for.

The coordinator grants what the worker has free (``free_slots``) less what it granted and has
not yet put in flight, when the stream opens and whenever a slot frees (``session.wakeup``); it ends
the requests when the worker drains or leaves, and the engine then ends the stream.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator

from trine_coordinator.session import WorkerSession
from trine_proto.trine.v1 import TakeWorkRequest


class Credit:
    """One ``take_work_stream``'s credit: the slots granted to the engine and not used up yet.

    A grant is used up when the runs it brought go into the session's ``in_flight``
    (:meth:`received`, just before they are handed out, with no await in between), not when they
    come: the coordinator may await between the two (a late run's lease is checked), and a slot
    that frees meanwhile would have :meth:`grant` count those runs neither as granted nor as in
    flight, and grant their slots a second time (the engine would then send runs the worker has
    no slot for). Used up after they are in flight, they would count twice the other way, and a
    slot freed in between would not be granted (credit lost until another frees).
    """

    def __init__(self, session: WorkerSession, lease_ttl_ms: int) -> None:
        self.session = session
        self.lease_ttl_ms = lease_ttl_ms
        self.grants: collections.deque[list[float]] = collections.deque()
        """``[when, runs]`` per grant not used up yet, oldest first: the engine sends runs
        against the oldest credit first, so a run came ``now - when`` after the slot it fills
        was granted. One that came long after (over half a lease TTL: the coordinator stalled,
        or the network did, or nothing was ready for that long) has its lease checked before it
        is sent: it may have expired while the run sat in the stream."""
        self._outstanding = 0
        """The runs of ``grants`` (kept as a total: a worker of 100 slots has about as many grants
        open, and the sum was taken at every grant)."""
        self._requests: asyncio.Queue[TakeWorkRequest | None] = asyncio.Queue()
        self._first = True

    async def requests(self) -> AsyncIterator[TakeWorkRequest]:
        """The stream's requests: each grant, until :meth:`end`."""
        while (request := await self._requests.get()) is not None:
            yield request

    def grant(self) -> None:
        """Grant the worker's free slots not granted yet."""
        more = self.session.free_slots - self.outstanding
        if more <= 0:
            return
        session = self.session
        if self._first:  # the first request names the taker; later ones only add credit
            self._first = False
            request = TakeWorkRequest(
                worker_id=session.worker_id,
                functions=session.functions,
                max_items=more,
                lease_ttl_ms=self.lease_ttl_ms,
                build_id=session.build_id,
            )
        else:
            request = TakeWorkRequest(max_items=more)
        self.grants.append([time.monotonic(), more])
        self._outstanding += more
        self._requests.put_nowait(request)

    @property
    def outstanding(self) -> int:
        """Runs granted that are not in flight yet: on their way, or come and being checked."""
        return self._outstanding

    def waited(self) -> float:
        """How long the runs that just came waited since the oldest slot they fill was granted
        (the engine fills the oldest credit first): the longer, the likelier their leases expired
        on the way. Uses nothing up: the runs are not in flight yet."""
        return time.monotonic() - self.grants[0][0] if self.grants else 0.0

    def received(self, count: int) -> None:
        """``count`` runs that came against this credit are being put in flight, or were dropped
        (lease expired on the way, given back): their grants are used up, oldest first. Call it
        with no await before the runs are put in flight, and with every run that came, dropped
        or not (the engine sent them, so it counts them against the credit either way)."""
        while count > 0 and self.grants:
            oldest = self.grants[0]
            used = min(count, int(oldest[1]))
            oldest[1] -= used
            self._outstanding -= used
            count -= used
            if oldest[1] <= 0:
                self.grants.popleft()

    def end(self) -> None:
        """End the requests: the engine then ends the stream, so a worker that drains or leaves
        is not sent runs only to give them back."""
        self._requests.put_nowait(None)

    async def keep_granting(self) -> None:
        """Grant as slots free, until the worker drains or leaves; then end the requests."""
        session = self.session
        while not (session.draining or session.closed):
            session.wakeup.clear()
            self.grant()
            await session.wakeup.wait()
        self.end()
