"""Leases as fence tokens: a stale or unknown lease is refused and changes nothing; a lease given
back, expired or fenced by the engine puts its run back for the next attempt."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from trine_core import LeaseLost
from trine_engine.leases import STALLED_MS
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetJournalRequest,
    GetRunRequest,
    ReleaseLeasesRequest,
    RenewLeasesRequest,
    ReportOutcome,
    RunStatus,
    WaitRunRequest,
)

Harness = Any


async def test_stale_lease_is_refused_and_changes_nothing(h: Harness) -> None:
    await h.register()
    run = await h.start()
    old = await h.take_one()
    await h.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[old.lease.id]))
    new = await h.take_one()
    assert new.lease.id != old.lease.id
    before = await h.backend.get_run(GetRunRequest(run_id=run.id))
    with pytest.raises(LeaseLost):
        await h.report(old, h.started(0), h.completed(0), h.finish())
    after = await h.backend.get_run(GetRunRequest(run_id=run.id))
    assert after == before
    assert len(h.inspect(run.id).events) == 1
    assert (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries == []
    assert (await h.report(new, h.finish())).outcome == ReportOutcome.FINISHED


async def test_unknown_lease_and_unknown_run(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    item.lease.id = "forged"
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_release_redispatches_first_with_the_next_attempt(h: Harness) -> None:
    await h.register()
    first = await h.start()
    second = await h.start()
    item = await h.take_one()
    assert item.run.id == first.id
    await h.report(item, h.completed(0, "a"))
    await h.dispatcher.release_leases(
        ReleaseLeasesRequest(lease_ids=[item.lease.id], reason="gone")
    )
    assert (await h.backend.get_run(GetRunRequest(run_id=first.id))).status == RunStatus.PENDING
    again = await h.take_one(worker="w2")
    assert again.run.id == first.id  # front of the queue, ahead of `second`
    assert again.lease.attempt == 2
    assert again.run.attempt == 2
    assert again.run.worker_id == "w2"
    assert [e.name for e in again.journal] == ["a"]
    assert (await h.take_one()).run.id == second.id


async def test_lease_expiry_releases_the_run(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one(ttl_ms=30)
    h.clock.advance(30)
    # Long-poll: the expiry (a timer in the engine) puts the run back and wakes this call.
    again = await h.take_one(wait_ms=5_000)
    assert again.run.id == run.id
    assert again.lease.attempt == 2
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_renew_keeps_a_lease_and_reports_lost_ones(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one(ttl_ms=50)
    for _ in range(4):
        renewed = await h.dispatcher.renew_leases(
            RenewLeasesRequest(lease_ids=[item.lease.id, "unknown"], lease_ttl_ms=200)
        )
        assert list(renewed.lost) == ["unknown"]
        h.clock.advance(30)  # longer than the first ttl, in total
    assert (await h.report(item, h.finish())).outcome == ReportOutcome.FINISHED
    lost = await h.dispatcher.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))
    assert list(lost.lost) == [item.lease.id]


async def test_cancel_forced_after_grace_fences_the_worker(h: Harness) -> None:
    await h.reopen(cancel_grace_ms=50)
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    await h.backend.cancel_run(CancelRunRequest(run_id=run.id, reason="stop"))
    h.clock.advance(50)
    final = await h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=5_000))
    assert final.status == RunStatus.CANCELLED
    assert final.worker_id == ""
    assert "grace" in final.error.message
    with pytest.raises(LeaseLost):
        await h.report(item, h.completed(1))
    assert (await h.dispatcher.renew_leases(RenewLeasesRequest(lease_ids=[item.lease.id]))).lost


# -- an engine that did not run (issue 10) ------------------------------------------------
# A lease lasts its TTL of the engine's running time: its expiry timer fires on time while the
# engine runs, so one found past its expiry by more than STALLED_MS means the engine was stopped
# or starved (or its clock stepped forward), and the renewal that kept it may be unread yet.


async def test_a_lease_past_expiry_after_an_engine_stall_is_renewed_not_lost(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one(ttl_ms=100)
    # The engine did not run for a second: the renewal is the first thing it reads again (no
    # await before it, so the timer loop has not seen the new time either).
    h.clock.advance(100 + STALLED_MS + 1)
    renewed = await h.dispatcher.renew_leases(
        RenewLeasesRequest(lease_ids=[item.lease.id], lease_ttl_ms=100)
    )
    assert list(renewed.lost) == []
    assert (await h.report(item, h.finish())).outcome == ReportOutcome.FINISHED


async def test_an_expiry_timer_firing_after_an_engine_stall_gives_the_lease_its_ttl_again(
    h: Harness,
) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one(ttl_ms=100)
    h.clock.advance(100 + STALLED_MS + 1)
    # The timer fires now, late: the lease gets its TTL again from now, the run stays leased.
    postponed = h.clock.now_ms() + 100

    def lease_expiry() -> int:
        lease = h.inspect(run.id).lease
        return lease.expires_at_ms if lease is not None else 0

    await h.until(lambda: lease_expiry() == postponed)
    assert await h.take() == []
    assert (await h.report(item, h.completed(0))).outcome == ReportOutcome.CONTINUE
    # Not renewed for a TTL of running time after that: it expires as any other.
    h.clock.advance(100)
    again = await h.take_one(wait_ms=5_000)
    assert (again.run.id, again.lease.attempt) == (run.id, 2)
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_a_lease_just_past_expiry_is_lost_stall_or_not(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one(ttl_ms=100)
    h.clock.advance(100 + STALLED_MS)  # no later than the timer could have been
    renewed = await h.dispatcher.renew_leases(
        RenewLeasesRequest(lease_ids=[item.lease.id], lease_ttl_ms=100)
    )
    assert list(renewed.lost) == [item.lease.id]
    with pytest.raises(LeaseLost):
        await h.report(item, h.finish())


async def test_an_expiry_is_a_warning_naming_the_run_the_worker_and_why(h: Harness) -> None:
    await h.register()
    run = await h.start()
    await h.take_one(ttl_ms=30)
    with capture_logs() as logs:
        h.clock.advance(30)
        await h.take_one(wait_ms=5_000)  # the expiry put the run back
    [expired] = [e for e in logs if e["event"].startswith("lease expired")]
    assert expired["log_level"] == "warning"
    assert (expired["run_id"], expired["worker_id"], expired["attempt"]) == (run.id, "w1", 1)
    assert expired["reason"] == "not renewed for 30 ms (lease_ttl_ms)"
