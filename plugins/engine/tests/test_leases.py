"""Leases as fence tokens: a stale or unknown lease is refused and changes nothing; a lease given
back, expired or fenced by the engine puts its run back for the next attempt."""

from __future__ import annotations

from typing import Any

import pytest

from trine_core import LeaseLost
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
