"""Caller-chosen durations and counts are clamped, whoever the caller is (issue 13): a forged
lease TTL of 2^32-1 ms, a long-poll of 49 days or a take of every ready run gets the engine's
maximum, not what it asked for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from trine_core import Settings
from trine_engine import backend, dispatcher
from trine_engine.settings import DATA_DIR, MAX_LEASE_TTL_MS, engine_config
from trine_proto.trine.v1 import RenewLeasesRequest, WaitRunRequest

Harness = Any
FORGED_MS = 2**32 - 1
"""The largest ``uint32`` of milliseconds: 49.7 days."""


async def test_a_forged_lease_ttl_is_clamped_to_max_lease_ttl(h: Harness) -> None:
    await h.register()
    run = await h.start()
    now = h.clock.now_ms()
    with capture_logs() as logs:
        item = await h.take_one(ttl_ms=FORGED_MS)
        await h.take(ttl_ms=FORGED_MS)  # logged once, not per call
    maximum = h.config.max_lease_ttl_ms
    assert maximum == 600_000
    assert item.lease.expires_at_ms == now + maximum
    [warning] = [e for e in logs if "max_lease_ttl_ms" in e["event"]]
    assert (warning["asked_ms"], warning["max_lease_ttl_ms"]) == (FORGED_MS, maximum)
    # Not held hostage: past the maximum, the run goes to its next attempt.
    h.clock.advance(maximum)
    again = await h.take_one(wait_ms=5_000)
    assert (again.run.id, again.lease.attempt) == (run.id, 2)


async def test_a_forged_renewal_ttl_is_clamped(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    h.clock.advance(10)
    renewed = await h.dispatcher.renew_leases(
        RenewLeasesRequest(lease_ids=[item.lease.id], lease_ttl_ms=FORGED_MS)
    )
    assert list(renewed.lost) == []
    lease = h.inspect(run.id).lease
    assert lease is not None
    assert lease.expires_at_ms == h.clock.now_ms() + h.config.max_lease_ttl_ms


async def test_a_lower_maximum_clamps_the_default_ttl_too(h: Harness) -> None:
    await h.reopen(max_lease_ttl_ms=1_000)
    await h.register()
    await h.start()
    now = h.clock.now_ms()
    item = await h.take_one()  # asks for no TTL: the engine's 30 s default, clamped
    assert item.lease.expires_at_ms == now + 1_000
    await h.start()
    asked = await h.take_one(ttl_ms=500)  # under the maximum: as asked
    assert asked.lease.expires_at_ms == h.clock.now_ms() + 500


async def test_a_forged_take_work_wait_is_clamped(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "MAX_TAKE_WAIT_MS", 20)
    await h.register()
    assert await asyncio.wait_for(h.take(wait_ms=FORGED_MS), 5) == []


async def test_a_forged_max_items_is_clamped(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "MAX_TAKE_ITEMS", 2)
    await h.register()
    for _ in range(3):
        await h.start()
    assert len(await h.take(max_items=FORGED_MS)) == 2
    assert len(await h.take(max_items=FORGED_MS)) == 1


async def test_a_forged_wait_run_is_clamped(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "MAX_WAIT_RUN_MS", 20)
    await h.register()
    run = await h.start()
    waited = await asyncio.wait_for(
        h.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=FORGED_MS)), 5
    )
    assert (waited.id, waited.status) == (run.id, run.status)


def test_the_setting_reaches_the_engine_config(tmp_path: Any) -> None:
    settings = Settings({DATA_DIR: tmp_path, MAX_LEASE_TTL_MS: 42_000})
    assert engine_config(settings).max_lease_ttl_ms == 42_000
    assert MAX_LEASE_TTL_MS.key == "engine.max_lease_ttl_ms"
    assert "clamped" in MAX_LEASE_TTL_MS.help
