"""Every engine log line about one run carries its ``run_id`` and its ``function`` (issue 11):
a lease that expires, one given back, one whose expiry is postponed after a stall, a failed run."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from tests.conftest import FUNCTION, Harness
from trine_engine.leases import STALLED_MS
from trine_proto.trine.v1 import ReleaseLeasesRequest


async def test_per_run_lines_carry_the_run_id_and_the_function(h: Harness) -> None:
    await h.register()
    with capture_logs() as logs:
        run = await h.start()
        # Expired: not renewed for its TTL.
        await h.take_one(ttl_ms=30)
        h.clock.advance(30)
        # Postponed: its expiry timer fires only after an engine stall.
        second = await h.take_one(wait_ms=5_000, ttl_ms=100)
        h.clock.advance(100 + STALLED_MS + 1)
        await h.until(lambda: any(e["event"].startswith("lease expiry postponed") for e in logs))
        # Given back by the coordinator.
        await h.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[second.lease.id]))
        third = await h.take_one(wait_ms=5_000)
        await h.report(third, h.fail("it broke"))

    def line(prefix: str) -> dict[str, Any]:
        [entry] = [e for e in logs if e["event"].startswith(prefix)]
        return entry

    for prefix in ("lease expired", "lease expiry postponed", "lease ended", "run failed"):
        entry = line(prefix)
        assert (entry["run_id"], entry["function"]) == (run.id, FUNCTION), entry
