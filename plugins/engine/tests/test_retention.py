"""Retention: a finished run is deleted that long after it ended (every row of it, nothing of
another run), a restart mid-way finishes the job, the log is trimmed and opens after trimming."""

from __future__ import annotations

from typing import Any

import pytest

from trine_core import ConfigError, RunExpired, RunNotFound
from trine_engine import retention
from trine_engine.retention import parse_retention
from trine_engine.storage.keys import (
    FAMILIES,
    FORGET_PREFIX,
    LOG,
    META,
    decode_log_key,
    decode_u64,
    expired_key,
    log_start_key,
)
from trine_proto.trine.v1 import GetJournalRequest, GetRunRequest, StartRunRequest

Harness = Any
RETENTION_MS = 10_000


def rows(h: Harness) -> dict[str, dict[bytes, bytes]]:
    """Every row of every column family but the log."""
    store = h.engine._store
    return {family: dict(store.scan(family)) for family in FAMILIES if family != LOG}


def mentioning(found: dict[str, dict[bytes, bytes]], run_id: str) -> list[tuple[str, bytes]]:
    """The rows whose key or value holds ``run_id`` (but its tombstone and when it goes)."""
    needle = run_id.encode()
    return [
        (family, key)
        for family, table in found.items()
        for key, value in table.items()
        if (needle in key or needle == value)
        and key != expired_key(run_id)
        and not key.startswith(FORGET_PREFIX)
    ]


async def finish(h: Harness, key: str = "") -> str:
    """Start a run, give it a step and an event, complete it: its id."""
    answer = await h.backend.start_run(
        StartRunRequest(function="greet", input=b"{}", idempotency_key=key)
    )
    item = await h.take_one()
    assert item.run.id == answer.run.id
    await h.report(
        item,
        h.started(0, "a"),
        h.completed(0, "a", b'"A"'),
        h.emit("note", b"{}", index=1),
        h.finish(b"7"),
    )
    return str(answer.run.id)


@pytest.fixture
async def r(h: Harness) -> Harness:
    await h.reopen(retention_ms=RETENTION_MS)
    await h.engine.retention.stop()  # the tests sweep, at the manual clock's times
    await h.register("greet")
    return h


def test_parse_retention() -> None:
    assert parse_retention("90s") == 90_000
    assert parse_retention("12h") == 12 * 3_600_000
    assert parse_retention("7d") == 7 * 86_400_000
    assert parse_retention("500ms") == 500
    assert parse_retention("off") == parse_retention("0") == 0
    for bad in ("7", "7 days", "-1s", "0s", "1.5h", ""):
        with pytest.raises(ConfigError, match="expected a duration"):
            parse_retention(bad)


async def test_sweep_deletes_every_row_of_an_expired_run_and_nothing_else(r: Harness) -> None:
    old = await finish(r, key="order-1")
    r.clock.advance(RETENTION_MS // 2)
    young = await finish(r, key="order-2")
    running = (await r.start()).id
    before = rows(r)
    assert mentioning(before, old)

    r.clock.advance(RETENTION_MS // 2 + 1)  # old ended retention + 1 ms ago, young half of it
    assert r.engine.retention.sweep(r.clock.now_ms()) == 1

    after = rows(r)
    assert mentioning(after, old) == []
    for run_id in (young, running):
        kept = mentioning(before, run_id)
        assert kept
        assert mentioning(after, run_id) == kept
        assert all(after[f][k] == before[f][k] for f, k in kept)
    with pytest.raises(RunExpired, match="deleted by retention: finished runs are kept 10s") as e:
        await r.backend.get_run(GetRunRequest(run_id=old))
    assert e.value.details["retention"] == "10s"
    with pytest.raises(RunExpired):
        await r.backend.get_journal(GetJournalRequest(run_id=old))
    with pytest.raises(RunNotFound):
        await r.backend.get_run(GetRunRequest(run_id="0" * 26))
    # its idempotency key is free again: the same key starts a new run
    again = await r.backend.start_run(
        StartRunRequest(function="greet", input=b"{}", idempotency_key="order-1")
    )
    assert again.run.id != old

    # the tombstone goes one retention later; then the id is simply unknown
    r.clock.advance(RETENTION_MS + 1)
    r.engine.retention.sweep(r.clock.now_ms())
    assert r.engine._store.get(META, expired_key(old)) is None
    with pytest.raises(RunNotFound):
        await r.backend.get_run(GetRunRequest(run_id=old))
    assert (await r.backend.get_run(GetRunRequest(run_id=running))).id == running


async def test_a_retried_run_is_not_deleted(r: Harness) -> None:
    from trine_proto.trine.v1 import RetryRunRequest

    await r.register("greet")
    answer = await r.backend.start_run(StartRunRequest(function="greet", input=b"{}"))
    item = await r.take_one()
    await r.report(item, r.fail())
    await r.backend.retry_run(RetryRunRequest(run_id=answer.run.id))
    r.clock.advance(RETENTION_MS + 1)
    assert r.engine.retention.sweep(r.clock.now_ms()) == 0
    assert (await r.backend.get_run(GetRunRequest(run_id=answer.run.id))).id


async def test_a_child_waits_for_its_parent(r: Harness) -> None:
    parent = (await r.start()).id
    item = await r.take_one()
    await r.report(item, r.child(0))
    child_item = await r.take_one()
    await r.report(child_item, r.finish())
    r.clock.advance(RETENTION_MS + 1)
    r.engine.retention.sweep(r.clock.now_ms())
    child = child_item.run.id
    assert (await r.backend.get_run(GetRunRequest(run_id=child))).id == child
    assert (await r.backend.get_run(GetRunRequest(run_id=parent))).id == parent


async def test_a_restart_mid_way_finishes_the_job(
    r: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH_RUNS", 2)
    ids = [await finish(r) for _ in range(5)]
    r.clock.advance(RETENTION_MS + 1)
    assert r.engine.retention.sweep(r.clock.now_ms()) == 2

    await r.reopen()
    await r.engine.retention.stop()
    gone = []
    for run_id in ids:
        try:
            await r.backend.get_run(GetRunRequest(run_id=run_id))
        except RunExpired:
            gone.append(run_id)
    assert gone == ids[:2]
    assert r.engine.retention.sweep(r.clock.now_ms()) == 2
    assert r.engine.retention.sweep(r.clock.now_ms()) == 1
    found = rows(r)
    assert all(mentioning(found, run_id) == [] for run_id in ids)


async def test_the_log_is_trimmed_and_opens_after(r: Harness) -> None:
    store = r.engine._store
    for _ in range(12):  # runs over 3 retentions, a sweep every eighth of one
        await finish(r)
        r.clock.advance(RETENTION_MS // 4)
        r.engine.retention.sweep(r.clock.now_ms())
    raw = store.get(META, log_start_key(0))
    assert raw is not None
    start = decode_u64(raw)
    assert start > 0
    segments = [decode_log_key(k)[1] for k, _ in store.scan(LOG)]
    assert segments[0] == start
    end = r.engine.stats().next_offset
    assert [offset for offset, _ in r.engine.read_log(start)][-1] == end - 1

    await r.reopen()  # opening checks the log from where it starts now
    await r.engine.retention.stop()
    assert r.engine.stats().next_offset == end
    last = await finish(r)
    assert (await r.backend.get_run(GetRunRequest(run_id=last))).id == last


async def test_a_log_missing_its_start_is_refused(r: Harness) -> None:
    from trine_core import StorageError
    from trine_engine.storage.keys import encode_u64

    await finish(r)
    store = r.engine._store
    batch = store.new_batch()
    store.put(batch, META, log_start_key(0), encode_u64(1))  # claims offset 0 was trimmed
    store.write(batch)
    await r.close()
    with pytest.raises(StorageError, match="log starts at offset 0, not at 1"):
        await r.open()


async def test_trine_check_finds_a_trimmed_and_swept_database_sound(r: Harness) -> None:
    import io

    from trine_engine import check

    for _ in range(12):
        await finish(r)
        r.clock.advance(RETENTION_MS // 4)
        r.engine.retention.sweep(r.clock.now_ms())
    assert r.engine._store.get(META, log_start_key(0)) is not None
    await r.close()
    out = io.StringIO()
    assert check.check(r.config.data_dir, out) == check.CLEAN, out.getvalue()


async def test_runs_finished_before_retention_existed_are_indexed(r: Harness) -> None:
    """A database of an earlier trine has no ``ended/`` rows: the sweep writes them first."""
    from trine_engine.storage.keys import ENDED_BACKFILL_KEY, ENDED_PREFIX

    old = await finish(r)
    store = r.engine._store
    batch = store.new_batch()
    for key, _ in store.scan(META, prefix=ENDED_PREFIX):
        store.delete(batch, META, key)
    store.delete(batch, META, ENDED_BACKFILL_KEY)
    store.write(batch)
    await r.reopen()
    await r.engine.retention.stop()
    r.clock.advance(RETENTION_MS + 1)
    assert r.engine.retention.sweep(r.clock.now_ms()) == 0  # writes the index
    assert store is not r.engine._store
    assert r.engine._store.get(META, ENDED_BACKFILL_KEY) == b"done"
    assert r.engine.retention.sweep(r.clock.now_ms()) == 1
    with pytest.raises(RunExpired):
        await r.backend.get_run(GetRunRequest(run_id=old))
