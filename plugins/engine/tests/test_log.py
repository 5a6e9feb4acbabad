"""The partition log: framing and CRCs, reading it back, group commit, failed writes, stats."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from typing import Any

import betterproto2
import pytest
from structlog.testing import capture_logs

from trine_core import StorageError
from trine_engine import Engine, EngineConfig, Store
from trine_engine.machine import StateMachine
from trine_engine.storage import framing, partition_log
from trine_engine.storage.keys import LOG, log_key
from trine_engine.storage.marker import read_marker
from trine_engine.storage.partition_log import WRITE_FAILED, read_log
from trine_proto.trine.v1 import (
    GetJournalRequest,
    GetRunRequest,
    ListRunsRequest,
    ReportOutcome,
    RunStatus,
    SignalRunRequest,
    StartRunRequest,
    TakeWorkRequest,
)

Harness = Any
SHIPPED_INLINE_AFTER_IDLE_S = partition_log.INLINE_AFTER_IDLE_S  # before conftest's autouse patch
SLOW_COMMIT_S = 0.25
IDLE_S = 0.2
"""Quiet longer than any commit of a loaded test machine: the next lone record is synced inline."""
QUEUED_BEHIND_S = 0.01


def test_framing_round_trip() -> None:
    records = [b"", b"a", b"x" * 1000]
    segment = framing.frame(records)
    assert list(framing.unframe(segment, 3, 40)) == [(40, b""), (41, b"a"), (42, b"x" * 1000)]
    assert segment[4:8] == zlib.crc32(b"").to_bytes(4, "big")


def test_framing_reports_the_corrupt_record() -> None:
    segment = bytearray(framing.frame([b"first", b"second"]))
    segment[-1] ^= 0xFF  # last byte of "second"
    decoded = framing.unframe(bytes(segment), 2, 10)
    assert next(decoded) == (10, b"first")
    with pytest.raises(StorageError, match="partition 2 offset 11 is corrupt") as info:
        next(decoded)
    assert info.value.details == {"partition": 2, "offset": 11}
    with pytest.raises(StorageError, match="offset 10 is corrupt: it is truncated"):
        list(framing.unframe(bytes(segment[:8]), 2, 10))


async def test_read_log_gives_every_record_in_order(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.completed(0))
    await h.report(item, h.finish())
    records = list(h.engine.read_log(0))
    assert [offset for offset, _ in records] == [0, 1, 2, 3]
    kinds = [betterproto2.which_one_of(record, "record")[0] for _, record in records]
    assert kinds == ["functions_registered", "run_started", "run_commands", "run_commands"]
    assert records[1][1].run_started.run.id == run.id
    assert [o for o, _ in h.engine.read_log(2)] == [2, 3]
    await h.reopen()
    assert [o for o, _ in h.engine.read_log(1)] == [1, 2, 3]
    assert h.engine.stats().next_offset == 4


def _corrupt_segment(config: EngineConfig, first_offset: int) -> None:
    store = Store.open(config.data_dir)
    try:
        key = log_key(0, first_offset)
        segment = bytearray(store.get(LOG, key) or b"")
        assert segment, "no such segment"
        segment[-1] ^= 0x01
        batch = store.new_batch()
        store.put(batch, LOG, key, bytes(segment))
        store.write(batch)
    finally:
        store.close()


async def test_a_corrupt_record_is_reported_with_partition_and_offset(h: Harness) -> None:
    await h.register()  # offset 0, its own batch
    await h.start()  # offset 1
    await h.close()
    _corrupt_segment(h.config, 0)
    # opening checks every record, not only the last segment's (issue 14): a damaged record
    # mid-log refuses the open, naming it
    with pytest.raises(StorageError, match="log record at partition 0 offset 0 is corrupt"):
        await h.open()
    # reading the log names it too, and reads the records after it
    store = Store.open(h.config.data_dir)
    try:
        with pytest.raises(StorageError, match="log record at partition 0 offset 0 is corrupt"):
            list(read_log(store, 0, 0))
        assert [o for o, _ in read_log(store, 0, 1)] == [1]
    finally:
        store.close()


async def test_a_corrupt_last_segment_stops_the_open(h: Harness) -> None:
    await h.register()
    await h.start()
    await h.close()
    _corrupt_segment(h.config, 1)
    with pytest.raises(StorageError, match="partition 0 offset 1 is corrupt"):
        await h.open()


async def test_concurrent_appends_share_batches(h: Harness) -> None:
    await h.register()
    runs = await asyncio.gather(*(h.start() for _ in range(200)))
    items = await h.take(max_items=200)
    assert {i.run.id for i in items} == {r.id for r in runs}
    before = h.engine.stats()
    responses = await asyncio.gather(*(h.report(item, h.finish()) for item in items))
    after = h.engine.stats()
    assert {r.outcome for r in responses} == {ReportOutcome.FINISHED}
    records = after.records - before.records
    batches = after.batches - before.batches
    assert records == 200
    # The first caller's record is written and fsynced at once; the others gather while that
    # fsync runs and share the next one (each batch one write, one fsync): how many gather
    # depends on the fsync's time, so only sharing is asserted here (exactly: in the next test).
    assert batches <= records // 2
    assert before.batches <= 200 // 2  # the 200 starts were batched too
    assert after.append_p99_ms >= after.append_p50_ms > 0


async def test_a_failed_write_is_never_acknowledged(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    kept = await h.start()

    def broken(store: Store, batch: Any, sync: bool = True) -> None:
        raise OSError("No space left on device")

    failures: list[str] = []
    h.engine.on_failure(lambda error: failures.append(error.message))
    monkeypatch.setattr(Store, "write", broken)  # the disk fills up
    with capture_logs() as logs:
        results = await asyncio.gather(h.start(), h.start(), h.start(), return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results)
    # The callers get a generic message; what failed (paths, offsets) is in the log only.
    assert str(results[0]) == WRITE_FAILED
    failed = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in failed] == ["log write failed; refusing every further change"]
    assert failed[0]["error"] == "No space left on device"
    assert failures == [WRITE_FAILED]  # the role's callback, once
    # It stops accepting changes; reads of durable state are still served.
    with pytest.raises(StorageError):
        await h.backend.start_run(StartRunRequest(function="greet"))
    with pytest.raises(StorageError):
        await h.dispatcher.take_work(TakeWorkRequest(worker_id="w", functions=["greet"]))
    assert (await h.backend.get_run(GetRunRequest(run_id=kept.id))).id == kept.id
    listed = await h.backend.list_runs(ListRunsRequest())
    assert [r.id for r in listed.runs] == [kept.id]  # the refused starts are not there
    assert h.engine.failed
    await h.close()
    monkeypatch.undo()
    # Nothing of the failed batch reached the disk.
    await h.open()
    listed = await h.backend.list_runs(ListRunsRequest())
    assert [r.id for r in listed.runs] == [kept.id]


class RecordedCommits:
    """``Store.write`` and ``Store.sync_wal`` recorded (each write's ``sync``, each fsync the
    sync thread asked for), a synced write taking ``synced_s`` longer (a slow disk), and the
    shipped ``INLINE_AFTER_IDLE_S`` (conftest's autouse fixture disables it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, synced_s: float = 0.0) -> None:
        self.writes: list[bool] = []
        self.syncs = 0
        real_write = Store.write

        def write(store: Store, batch: Any, sync: bool = True) -> None:
            self.writes.append(sync)
            real_write(store, batch, sync)
            if sync and synced_s:
                time.sleep(synced_s)

        def sync_wal(store: Store) -> None:
            self.syncs += 1

        monkeypatch.setattr(Store, "write", write)
        monkeypatch.setattr(Store, "sync_wal", sync_wal)
        monkeypatch.setattr(partition_log, "INLINE_AFTER_IDLE_S", SHIPPED_INLINE_AFTER_IDLE_S)


async def test_a_lone_record_on_an_idle_log_is_synced_inline(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    commits = RecordedCommits(monkeypatch)
    # However long the registration's commit took on this machine:
    monkeypatch.setattr(partition_log, "INLINE_MAX_COMMIT_S", float("inf"))
    await asyncio.sleep(IDLE_S)  # idle: the log waits for nothing
    run = await h.start()
    assert (commits.writes, commits.syncs) == ([True], 0)  # synced, no hand-off to the thread
    assert read_marker(h.config.data_dir, 0) == 2  # acknowledged: the registration and the start
    await h.close()
    monkeypatch.undo()
    await h.open()
    assert (await h.backend.get_run(GetRunRequest(run_id=run.id))).id == run.id


async def test_after_a_slow_commit_a_lone_record_goes_through_the_sync_thread(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a disk whose fsync is slow, the loop must not stop for it: the next lone record is
    fsynced by the sync thread, not inline."""
    await h.register()
    # a disk's fsync slower than any commit of a loaded test machine
    commits = RecordedCommits(monkeypatch, synced_s=SLOW_COMMIT_S * 1.2)
    monkeypatch.setattr(partition_log, "INLINE_MAX_COMMIT_S", SLOW_COMMIT_S)
    await asyncio.sleep(IDLE_S)  # idle: the log waits for nothing
    await h.start()
    assert (commits.writes, commits.syncs) == ([True], 0)  # inline, and slow
    await asyncio.sleep(SLOW_COMMIT_S * 2)  # idle again, longer than that commit took
    await h.start()
    assert (commits.writes, commits.syncs) == ([True, False], 1)  # unsynced, then the thread's


async def test_a_record_that_comes_sooner_than_the_last_commit_took_goes_through_the_thread(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records that queued behind an inline fsync come right after it: each must not get an
    inline fsync of its own, one after another, but gather behind one in the sync thread."""
    await h.register()
    # a slow fsync, still under INLINE_MAX_COMMIT_S
    commits = RecordedCommits(monkeypatch, synced_s=QUEUED_BEHIND_S * 5)
    monkeypatch.setattr(partition_log, "INLINE_MAX_COMMIT_S", float("inf"))
    await asyncio.sleep(IDLE_S)
    await h.start()
    assert (commits.writes, commits.syncs) == ([True], 0)  # inline
    # Quiet for longer than INLINE_AFTER_IDLE_S, not for as long as the last commit took:
    await asyncio.sleep(QUEUED_BEHIND_S)
    await h.start()
    assert (commits.writes, commits.syncs) == ([True, False], 1)  # through the thread


class GatedSync:
    """``Store.sync_wal`` held in the sync thread until the test releases it (or failing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: OSError | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        real = Store.sync_wal

        def gated(store: Store) -> None:
            self.calls += 1
            self.entered.set()
            assert self.release.wait(10), "the test never released the fsync"
            if error is not None:
                raise error
            real(store)

        monkeypatch.setattr(Store, "sync_wal", gated)

    async def running(self) -> None:
        """Return once an fsync is under way in the sync thread (the loop turns meanwhile)."""
        assert await asyncio.to_thread(self.entered.wait, 10)
        self.entered.clear()


async def test_a_caller_is_answered_only_once_the_fsync_returned(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    acked = read_marker(h.config.data_dir, 0)
    assert acked == 1  # the registration
    gate = GatedSync(monkeypatch)
    first = asyncio.create_task(h.start())
    await gate.running()  # written, the fsync running in its thread while the loop goes on
    second = asyncio.create_task(h.start())
    third = asyncio.create_task(h.start())
    await asyncio.to_thread(lambda: None)  # a few turns of the loop: both appended, both wait
    assert not any(task.done() for task in (first, second, third))
    assert read_marker(h.config.data_dir, 0) == acked  # nothing acknowledged before the fsync
    assert h.engine.stats().next_offset == 4
    gate.release.set()
    await asyncio.gather(first, second, third)
    assert read_marker(h.config.data_dir, 0) == 4
    assert gate.calls == 2  # the two appends made during the first fsync shared the second
    assert h.engine.stats().batches == 3


async def test_a_run_written_but_not_fsynced_is_not_listed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    gate = GatedSync(monkeypatch)
    started = asyncio.create_task(h.start())
    await gate.running()  # its `runs` row is in RocksDB, its fsync not returned
    listed = await h.backend.list_runs(ListRunsRequest())
    assert listed.runs == []
    gate.release.set()
    run = await started
    listed = await h.backend.list_runs(ListRunsRequest())
    assert [r.id for r in listed.runs] == [run.id]


async def test_a_failed_fsync_is_never_acknowledged(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    kept = await h.start()
    gate = GatedSync(monkeypatch, OSError(5, "Input/output error"))
    first = asyncio.create_task(h.start())
    await gate.running()
    later = asyncio.create_task(h.start())  # written after the fsync that will fail
    await asyncio.to_thread(lambda: None)
    with capture_logs() as logs:
        gate.release.set()
        results = await asyncio.gather(first, later, return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results), results
    assert str(results[0]) == WRITE_FAILED  # generic; the log line has the error
    failed = [e for e in logs if e["event"] == "log write failed; refusing every further change"]
    assert failed
    assert "Input/output error" in failed[0]["error"]
    assert gate.calls == 1  # no later fsync is trusted: the batch gathered meanwhile fails too
    with pytest.raises(StorageError):
        await h.backend.start_run(StartRunRequest(function="greet"))
    assert h.engine.failed
    assert read_marker(h.config.data_dir, 0) == 2  # the registration and the kept run only
    await h.close()
    monkeypatch.undo()
    await h.open()  # the unacknowledged records may be there (the page cache had them)
    run = await h.backend.get_run(GetRunRequest(run_id=kept.id))
    assert run.id == kept.id


async def test_close_answers_the_batch_whose_fsync_is_in_flight(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    gate = GatedSync(monkeypatch)
    first = asyncio.create_task(h.start())
    await gate.running()
    second = asyncio.create_task(h.start())
    await asyncio.to_thread(lambda: None)  # appended: gathered, waiting for the next fsync
    gate.release.set()
    await h.close()  # waits for the fsync in flight, writes and fsyncs the gathered batch
    started = await asyncio.gather(first, second)
    assert gate.calls == 2
    assert read_marker(h.config.data_dir, 0) == 3
    monkeypatch.undo()
    await h.open()
    listed = await h.backend.list_runs(ListRunsRequest())
    assert sorted(r.id for r in listed.runs) == sorted(r.id for r in started)


async def test_stats_are_logged_at_stop(config: EngineConfig) -> None:
    engine = await Engine.open(config)
    with capture_logs() as logs:
        await engine.close()
    stats = [e for e in logs if e["event"] == "engine stats"]
    assert len(stats) == 1
    assert {"append_p50_ms", "append_p99_ms", "batches", "records", "leases", "timers"} <= set(
        stats[0]
    )


async def test_a_record_that_fails_to_apply_is_never_written(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.register()
    apply = StateMachine.apply
    calls = 0

    def apply_second_fails(machine: StateMachine, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("bug")  # a bug in an applier
        apply(machine, *args)

    monkeypatch.setattr(StateMachine, "apply", apply_second_fails)
    gate = GatedSync(monkeypatch)
    blocker = asyncio.create_task(h.start())  # its fsync in flight: the next two gather
    await gate.running()
    calls = 0
    with capture_logs() as logs:
        both = asyncio.gather(h.start(), h.start(), return_exceptions=True)
        await asyncio.to_thread(lambda: None)
        gate.release.set()
        first, second = await both
    await blocker  # written before: acknowledged
    assert isinstance(second, RuntimeError)
    assert isinstance(first, StorageError)  # it shared the poisoned batch: not acknowledged
    assert str(first) == WRITE_FAILED  # generic; the log line names the offset
    assert [e["offset"] for e in logs if e["event"].startswith("applying a record failed")] == [3]
    assert h.engine.failed
    records_before = h.engine.stats().records
    await h.close()
    monkeypatch.undo()
    await h.open()
    assert h.engine.stats().records == 0 < records_before
    assert [o for o, _ in h.engine.read_log(0)] == [0, 1]  # the registration, the blocker


async def test_after_a_failed_write_reads_show_only_what_is_durable(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed batch's records were applied to memory before the write: a signal that
    resolved a wait, a signal kept by a run that waits for nothing. Reads must not show them."""
    await h.register()
    waiting = await h.start()
    idle = await h.start()
    item = next(i for i in await h.take(max_items=2) if i.run.id == waiting.id)
    assert (await h.report(item, h.wait_signal(0, "go"))).outcome == ReportOutcome.SUSPENDED

    def broken(store: Store, batch: Any, sync: bool = True) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(Store, "write", broken)
    sent = await asyncio.gather(
        h.backend.signal_run(SignalRunRequest(run_id=waiting.id, name="go", payload=b'"x"')),
        h.backend.signal_run(SignalRunRequest(run_id=idle.id, name="later", payload=b"1")),
        return_exceptions=True,
    )
    assert all(isinstance(r, StorageError) for r in sent)
    run = await h.backend.get_run(GetRunRequest(run_id=waiting.id))
    assert run.status == RunStatus.SUSPENDED
    assert [w.name for w in run.waiting] == ["go"]
    journal = await h.backend.get_journal(GetJournalRequest(run_id=waiting.id))
    assert [(e.name, e.pending, e.output) for e in journal.entries] == [("go", True, b"")]
    assert not (await h.backend.get_run(GetRunRequest(run_id=idle.id))).kept_signals
