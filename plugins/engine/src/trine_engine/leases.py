"""Leases: which worker may report for which run, as fence tokens.

In memory only, for one engine process's lifetime (docs/internals.md, "Runs"): granting one costs
no fsync, and after a restart every non-final run is pending again, so a lease from before it is
refused. A lease ends in one of two ways. *Released* (given back, or expired): no record is
written and the run is pending again, first in line. *Fenced*: a record ended the attempt (the run
finished, suspended, scheduled a retry, or was ended by the engine); it is refused at once, while
readers keep seeing the run ``running`` until that record is durable.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Callable

import structlog

from trine_core import LeaseLost
from trine_engine.clock import Clock
from trine_engine.run_state import RunCache, RunState
from trine_engine.timers import Timers
from trine_proto.trine.v1 import Lease as LeaseMessage


@dataclasses.dataclass(eq=False, slots=True)
class Lease:
    id: str
    run_id: str
    worker_id: str
    attempt: int
    expires_at_ms: int

    def message(self) -> LeaseMessage:
        return LeaseMessage(id=self.id, attempt=self.attempt, expires_at_ms=self.expires_at_ms)


class LeaseTable:
    def __init__(
        self,
        cache: RunCache,
        clock: Clock,
        timers: Timers,
        requeue: Callable[[RunState], None],
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._timers = timers
        self._requeue = requeue
        self._log = log
        self._leases: dict[str, Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def grant(self, state: RunState, worker_id: str, ttl_ms: int, now: int) -> Lease:
        """A new lease on ``state`` for its next attempt."""
        attempt = max(state.dispatches, state.run.attempt) + 1
        state.dispatches = attempt
        lease = Lease(
            id=secrets.token_urlsafe(16),
            run_id=state.id,
            worker_id=worker_id,
            attempt=attempt,
            expires_at_ms=now + ttl_ms,
        )
        state.lease = lease
        self._leases[lease.id] = lease
        self._expire_at(lease)
        return lease

    def check(self, state: RunState, lease_id: str, now: int) -> Lease:
        """``state``'s lease if ``lease_id`` names it and it has not expired; else LeaseLost
        (an expired lease is released on the way)."""
        lease = state.lease
        if lease is None or lease.id != lease_id:
            raise LeaseLost(
                f"lease {lease_id!r} is not the current lease of run {state.id}",
                run_id=state.id,
                lease_id=lease_id,
            )
        if lease.expires_at_ms <= now:
            self.release(lease, "expired")
            raise LeaseLost(
                f"lease {lease.id!r} of run {state.id} expired", run_id=state.id, lease_id=lease.id
            )
        return lease

    def renew(self, lease_id: str, ttl_ms: int, now: int) -> Lease | None:
        """The lease, now expiring ``ttl_ms`` from ``now``; None if it is not current (an expired
        one is released on the way)."""
        lease = self._leases.get(lease_id)
        if lease is None or lease.expires_at_ms <= now:
            if lease is not None:
                self.release(lease, "expired")
            return None
        lease.expires_at_ms = now + ttl_ms
        self._expire_at(lease)
        return lease

    def release_id(self, lease_id: str, reason: str) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            self.release(lease, reason)

    def release(self, lease: Lease, reason: str) -> None:
        """The lease ends without a record: its run is pending again, first in line."""
        self._leases.pop(lease.id, None)
        state = self._cache.active.get(lease.run_id)
        if state is None or state.lease is not lease:
            return
        state.lease = None
        # An expiry means a worker went quiet without the coordinator noticing: worth seeing.
        emit = self._log.info if reason == "expired" else self._log.debug
        emit("lease ended", run_id=state.id, worker_id=lease.worker_id, reason=reason)
        state.wake()
        self._requeue(state)

    def fence(self, state: RunState) -> None:
        """A record ended the run's attempt: refuse its lease from now on; readers see the run
        running until that record is durable."""
        lease = state.lease
        if lease is None:
            return
        self._leases.pop(lease.id, None)
        state.lease = None
        state.ending_lease = lease

    def _expire_at(self, lease: Lease) -> None:
        self._timers.at(lease.expires_at_ms, functools.partial(self._expired, lease.id))

    def _expired(self, lease_id: str) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None and lease.expires_at_ms <= self._clock.now_ms():
            self.release(lease, "expired")
