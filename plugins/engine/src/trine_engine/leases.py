"""Leases: which worker may report for which run, as fence tokens.

In memory only, for one engine process's lifetime (docs/internals.md, "Runs"): granting one costs
no fsync, and after a restart every non-final run is pending again, so a lease from before it is
refused. A lease ends in one of two ways. *Released* (given back, or expired): no record is
written and the run is pending again, first in line. *Fenced*: a record ended the attempt (the run
finished, suspended, scheduled a retry, or was ended by the engine); it is refused at once, while
readers keep seeing the run ``running`` until that record is durable.

A lease lasts its TTL of the engine's *running* time. Its expiry timer fires on time whenever
the engine runs, so a lease found past its expiry by more than ``STALLED_MS`` (by the timer, a
renewal or a report) means the engine itself did not run meanwhile (a stopped or starved process,
a suspended VM) or its clock stepped forward: the renewal that would have kept it may be waiting
unread. Such a lease gets its TTL again from now instead of expiring, so a stall of the engine
does not take the runs away from live workers (issue 10); a coordinator that really died loses
its leases one TTL later.
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

STALLED_MS = 500
"""A lease found this much past its expiry was not expired by its timer on time: the engine did
not run (or its clock jumped), so the lease gets its TTL again instead of expiring."""


@dataclasses.dataclass(eq=False, slots=True)
class Lease:
    id: str
    run_id: str
    worker_id: str
    attempt: int
    expires_at_ms: int
    ttl_ms: int
    build_id: str = ""
    """The taker's build: its reports name it (``RunCommands.build_id``), so a run with no build
    yet gets it with the first, and a run it blocks names it (``Run.blocked_build_id``)."""

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

    def grant(
        self, state: RunState, worker_id: str, ttl_ms: int, now: int, build_id: str = ""
    ) -> Lease:
        """A new lease on ``state`` for its next attempt, to a worker of ``build_id``."""
        attempt = max(state.dispatches, state.run.attempt) + 1
        state.dispatches = attempt
        lease = Lease(
            id=secrets.token_urlsafe(16),
            run_id=state.id,
            worker_id=worker_id,
            attempt=attempt,
            expires_at_ms=now + ttl_ms,
            ttl_ms=ttl_ms,
            build_id=build_id,
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
        if not self._live(lease, now):
            raise LeaseLost(
                f"lease {lease.id!r} of run {state.id} expired", run_id=state.id, lease_id=lease.id
            )
        return lease

    def renew(self, lease_id: str, ttl_ms: int, now: int) -> Lease | None:
        """The lease, now expiring ``ttl_ms`` from ``now``; None if it is not current (an expired
        one is released on the way)."""
        lease = self._leases.get(lease_id)
        if lease is None or not self._live(lease, now):
            return None
        lease.ttl_ms = ttl_ms
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
        # An expiry means the coordinator stopped renewing (it died, stalled for a whole TTL, or
        # cannot reach us): the run goes to another attempt while the old one may still run,
        # fenced. Worth a warning. A release is the coordinator's, which says why itself.
        if reason == "expired":
            self._log.warning(
                "lease expired; the run is dispatched again and its old attempt is fenced",
                run_id=state.id,
                function=state.run.function,
                worker_id=lease.worker_id,
                attempt=lease.attempt,
                reason=f"not renewed for {lease.ttl_ms} ms (lease_ttl_ms)",
            )
        else:
            self._log.debug(
                "lease ended",
                run_id=state.id,
                function=state.run.function,
                worker_id=lease.worker_id,
                reason=reason,
            )
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
        if lease is not None:
            self._live(lease, self._clock.now_ms())

    def _live(self, lease: Lease, now: int) -> bool:
        """Whether ``lease`` (a current one) is still live at ``now``: not yet expired, or found
        expired only because the engine did not run (then it gets its TTL again from ``now``).
        A lease that really expired is released here."""
        late = now - lease.expires_at_ms
        if late < 0:
            return True
        if late <= STALLED_MS:
            self.release(lease, "expired")
            return False
        # Rare (the engine stalled): a lookup for the run's function is fine here.
        state = self._cache.active.get(lease.run_id)
        self._log.info(
            "lease expiry postponed: the engine did not run when it came due",
            run_id=lease.run_id,
            function=state.run.function if state is not None else None,
            worker_id=lease.worker_id,
            late_ms=late,
        )
        lease.expires_at_ms = now + lease.ttl_ms
        self._expire_at(lease)
        return True
