"""A worker session's credit on its ``take_work_stream``: the engine sends a run only against a
slot the coordinator granted, so the coordinator is never sent work it has no worker slot for.

The coordinator grants what the worker has free (``free_slots``) less what it granted and has
not received yet, when the stream opens and whenever a slot frees (``session.wakeup``); it ends
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
    def __init__(self, session: WorkerSession, lease_ttl_ms: int) -> None:
        self.session = session
        self.lease_ttl_ms = lease_ttl_ms
        self.grants: collections.deque[list[float]] = collections.deque()
        """``[when, runs]`` per grant not used up yet, oldest first: the engine sends runs
        against the oldest credit first, so a run came ``now - when`` after the slot it fills
        was granted. One that came long after (over half a lease TTL: the coordinator stalled,
        or the network did, or nothing was ready for that long) has its lease checked before it
        is sent: it may have expired while the run sat in the stream."""
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
        self._requests.put_nowait(request)

    @property
    def outstanding(self) -> int:
        """Runs granted that have not come yet."""
        return int(sum(runs for _, runs in self.grants))

    def received(self, count: int) -> float:
        """``count`` runs came; how long the oldest of them waited since its slot was granted."""
        now = time.monotonic()
        waited = now - self.grants[0][0] if self.grants else 0.0
        while count > 0 and self.grants:
            oldest = self.grants[0]
            used = min(count, int(oldest[1]))
            oldest[1] -= used
            count -= used
            if oldest[1] <= 0:
                self.grants.popleft()
        return waited

    def end(self) -> None:
        self._requests.put_nowait(None)

    async def keep_granting(self) -> None:
        """Grant as slots free, until the worker drains or leaves; then end the requests."""
        session = self.session
        while not (session.draining or session.closed):
            session.wakeup.clear()
            self.grant()
            await session.wakeup.wait()
        self.end()
