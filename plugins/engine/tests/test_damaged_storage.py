"""Damaged storage is refused, loudly (issue 14): real RocksDB files, real damage written here.

A real engine process acknowledges runs and is killed with SIGKILL (nothing flushed, everything
acknowledged lives in the WAL, as in the issue's report); then the newest WAL file is damaged.
A WAL damaged mid-file or cut to half refuses to open with one line naming the damage, and the
files are left as they were; a torn tail of a write never acknowledged opens with everything
acknowledged. A damaged SST block makes the reads and listings touching it fail with
``storage_error`` (never a short page).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.damage_kit import (
    RUNS,
    crash_after_acknowledged_runs,
    newest_wal,
    overwrite_middle,
    runs_table,
    snapshot,
)

from trine_core import StorageError
from trine_engine import Engine, EngineConfig
from trine_engine.storage.framing import frame
from trine_engine.storage.keys import LOG, log_key
from trine_engine.storage.marker import AckMarker, marker_path, read_marker
from trine_engine.storage.store import Store
from trine_proto.trine.v1 import GetRunRequest, ListRunsRequest, RunStatus
from trine_proto.vocabulary import ErrorCode


async def refused(data_dir: Path) -> str:
    with pytest.raises(StorageError) as caught:
        await Engine.open(EngineConfig(data_dir=data_dir))
    message = caught.value.message
    assert "\n" not in message
    return message


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, int, list[str]]:
    data_dir = tmp_path / "data"
    next_offset, ids = crash_after_acknowledged_runs(data_dir)
    assert read_marker(data_dir, 0) == next_offset
    return data_dir, next_offset, ids


async def test_a_crash_alone_loses_nothing(crashed: tuple[Path, int, list[str]]) -> None:
    data_dir, next_offset, _ = crashed
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    try:
        assert engine.stats().next_offset == next_offset
        listed = await engine.backend.list_runs(ListRunsRequest(limit=1000))
        assert len(listed.runs) == RUNS
        assert {r.status for r in listed.runs} == {RunStatus.COMPLETED}
    finally:
        await engine.close()


async def test_a_wal_overwritten_mid_file_refuses_to_open(
    crashed: tuple[Path, int, list[str]],
) -> None:
    data_dir, _, _ = crashed
    wal = newest_wal(data_dir)
    overwrite_middle(wal)
    before = snapshot(data_dir)

    message = await refused(data_dir)

    assert message == (
        f"data dir {data_dir} is damaged: RocksDB refuses its write-ahead log ({wal.name}): "
        f"Corruption: checksum mismatch; the records behind the damage cannot be recovered; "
        f"refusing to open it (trine check --data-dir {data_dir})"
    )
    assert snapshot(data_dir) == before  # nothing written: the damaged WAL is still there
    assert await refused(data_dir) == message  # and stays refused


async def test_a_wal_cut_to_half_refuses_to_open(crashed: tuple[Path, int, list[str]]) -> None:
    data_dir, next_offset, _ = crashed
    wal = newest_wal(data_dir)
    os.truncate(wal, wal.stat().st_size // 2)
    before = snapshot(data_dir)

    message = await refused(data_dir)

    assert f"data dir {data_dir} is damaged: partition 0's log ends at offset " in message
    assert f"but offsets up to {next_offset - 1} were acknowledged (trine-acked-0)" in message
    assert f"its RocksDB write-ahead log ({wal.name}) was damaged or cut short" in message
    assert "acknowledged writes are lost" in message
    assert snapshot(data_dir) == before


async def test_a_torn_tail_never_acknowledged_opens(
    crashed: tuple[Path, int, list[str]],
) -> None:
    """The process died while writing one more batch: the WAL ends with part of a record (a
    header announcing more bytes than follow). It was never acknowledged: the engine opens, with
    everything that was."""
    data_dir, next_offset, _ = crashed
    wal = newest_wal(data_dir)
    with wal.open("ab") as f:
        # a WAL record header (CRC32, length 1000, type FULL) and 10 of its 1000 bytes
        f.write(b"\x12\x34\x56\x78" + (1000).to_bytes(2, "little") + b"\x01" + b"x" * 10)

    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    try:
        assert engine.stats().next_offset == next_offset
        listed = await engine.backend.list_runs(ListRunsRequest(limit=1000))
        assert {r.status for r in listed.runs} == {RunStatus.COMPLETED}
        assert len(listed.runs) == RUNS
    finally:
        await engine.close()


async def test_a_marker_ahead_of_an_intact_log_refuses_to_open(tmp_path: Path) -> None:
    """A store rolled back whole (a restored copy of an older data dir, a lost WAL file) has no
    damage RocksDB can see: only the marker tells."""
    data_dir = tmp_path / "data"
    next_offset, _ = crash_after_acknowledged_runs(data_dir, runs=3)
    marker = marker_path(data_dir, 0)
    saved = marker.read_bytes()
    for wal in data_dir.glob("*.log"):
        wal.unlink()
    message = await refused(data_dir)
    assert "log ends at offset -1" in message
    assert f"offsets up to {next_offset - 1} were acknowledged" in message
    assert marker.read_bytes() == saved


async def test_a_damaged_sst_block_fails_reads_and_listings(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _, ids = crash_after_acknowledged_runs(data_dir, runs=RUNS)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))  # replays the WAL
    await engine.close()  # closing flushes the memtables: the runs are in SST files now
    sst = runs_table(data_dir)
    overwrite_middle(sst)

    engine = await Engine.open(EngineConfig(data_dir=data_dir))  # every run is final: no scan
    try:
        with pytest.raises(StorageError) as caught:
            await engine.backend.list_runs(ListRunsRequest(limit=1000))
        assert caught.value.code == ErrorCode.STORAGE_ERROR
        assert str(data_dir) not in caught.value.message  # no file paths for clients
        # every page of a listing that reaches the damaged block fails: never a short page
        token, pages, failed = "", 0, False
        while True:
            try:
                page = await engine.backend.list_runs(ListRunsRequest(limit=10, page_token=token))
            except StorageError:
                failed = True
                break
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert failed, f"{pages} pages listed over a damaged block"
        codes = []
        for run_id in ids:
            try:
                await engine.backend.get_run(GetRunRequest(run_id=run_id))
            except StorageError as exc:
                codes.append(exc.code)
        assert codes  # the runs in the damaged block fail, the others read
        assert set(codes) == {ErrorCode.STORAGE_ERROR}
        assert len(codes) < len(ids)
    finally:
        await engine.close()


async def test_a_damaged_table_footer_refuses_to_open(tmp_path: Path) -> None:
    """RocksDB itself refuses a table it cannot open: the line names it, not the WAL."""
    data_dir = tmp_path / "data"
    crash_after_acknowledged_runs(data_dir)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    await engine.close()
    sst = runs_table(data_dir)
    with sst.open("r+b") as f:
        f.seek(sst.stat().st_size - 40)
        f.write(b"\0" * 40)

    message = await refused(data_dir)

    assert message.startswith(
        f"data dir {data_dir} is damaged: RocksDB refuses to open it: Corruption: Bad table magic "
    )
    assert sst.name in message
    assert "write-ahead log" not in message


async def test_a_damaged_sst_block_read_at_open_refuses_to_open(tmp_path: Path) -> None:
    """Opening reads every non-final run back: a damaged block there is a boot error naming it."""
    data_dir = tmp_path / "data"
    crash_after_acknowledged_runs(data_dir, finish=False)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    await engine.close()
    sst = runs_table(data_dir)
    overwrite_middle(sst)

    message = await refused(data_dir)

    assert message.startswith(
        f"data dir {data_dir} is damaged: reading its 'runs' rows failed: Corruption: block "
        f"checksum mismatch"
    )
    assert sst.name in message


def test_the_marker_survives_a_torn_slot(tmp_path: Path) -> None:
    """Two slots written in turn: a store torn by a power loss leaves the other one, at most one
    batch behind (never ahead); both damaged is a damaged marker."""
    marker = AckMarker(tmp_path, 0, 5)
    marker.record(9)  # slot 0
    marker.record(12)  # slot 1
    marker.close()
    path = marker_path(tmp_path, 0)
    raw = bytearray(path.read_bytes())
    assert read_marker(tmp_path, 0) == 12
    raw[20] ^= 0xFF  # slot 1 torn
    path.write_bytes(bytes(raw))
    assert read_marker(tmp_path, 0) == 9
    raw[4] ^= 0xFF  # slot 0 too
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="trine-acked-0 is damaged: it fails its checksums"):
        read_marker(tmp_path, 0)


async def test_a_log_record_failing_its_crc_mid_log_refuses_to_open(tmp_path: Path) -> None:
    """The engine's own framing: opening checks every record of the partition log."""
    data_dir = tmp_path / "data"
    next_offset, _ = crash_after_acknowledged_runs(data_dir, runs=5)
    store = Store.open(data_dir)
    try:
        segment = bytearray(frame([b"\x12\x04abcd"]))
        segment[-1] ^= 0xFF
        batch = store.new_batch()
        store.put(batch, LOG, log_key(0, 2), bytes(segment))  # offset 2 of 0..next_offset-1
        store.write(batch)
    finally:
        store.close()
    assert next_offset > 3

    message = await refused(data_dir)

    assert message == (
        f"data dir {data_dir} is damaged: log record at partition 0 offset 2 is corrupt: it "
        f"fails its CRC32 check; refusing to open it (trine check --data-dir {data_dir})"
    )
