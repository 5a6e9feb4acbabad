"""``trine check --data-dir D``: offline, on real RocksDB files with real damage written here."""

from __future__ import annotations

import io
import os
import subprocess
import sys
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

from trine_engine import Engine, EngineConfig
from trine_engine.check import main
from trine_engine.storage.framing import frame
from trine_engine.storage.keys import LOG, log_key
from trine_engine.storage.store import Store


def check(data_dir: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main("trine check", ["--data-dir", str(data_dir)], out)
    return code, out.getvalue()


def damaged_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("damaged: ")]


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    crash_after_acknowledged_runs(data_dir, runs=50)
    return data_dir


def test_a_sound_data_dir(crashed: Path) -> None:
    before = snapshot(crashed)
    code, output = check(crashed)
    assert (code, output) == (0, f"trine check: {crashed}: sound\n")
    assert snapshot(crashed) == before  # read-only: the WAL is not even replayed into SSTs


async def test_a_sound_data_dir_after_a_clean_close(crashed: Path) -> None:
    engine = await Engine.open(EngineConfig(data_dir=crashed))
    await engine.close()
    assert check(crashed) == (0, f"trine check: {crashed}: sound\n")


def test_a_wal_overwritten_mid_file(crashed: Path) -> None:
    wal = newest_wal(crashed)
    overwrite_middle(wal)
    code, output = check(crashed)
    assert code == 1
    lines = damaged_lines(output)
    assert lines[0] == (
        f"damaged: RocksDB refuses its write-ahead log ({wal.name}): Corruption: checksum "
        f"mismatch; the records behind the damage cannot be recovered (the rest is checked as "
        f"recovered up to it)"
    )
    # what RocksDB recovers before the damage ends before what was acknowledged
    assert any("were acknowledged (trine-acked-0)" in line for line in lines)
    assert output.endswith(f"trine check: {crashed}: DAMAGED, {len(lines)} problem(s)\n")


def test_a_wal_cut_to_half(crashed: Path) -> None:
    wal = newest_wal(crashed)
    os.truncate(wal, wal.stat().st_size // 2)
    code, output = check(crashed)
    assert code == 1
    (line,) = damaged_lines(output)
    assert line.startswith("damaged: partition 0: offsets up to ")
    assert line.endswith("acknowledged writes are lost")


async def test_a_damaged_sst_block(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    crash_after_acknowledged_runs(data_dir)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    await engine.close()
    sst = runs_table(data_dir)
    overwrite_middle(sst)
    code, output = check(data_dir)
    assert code == 1
    assert "damaged: column family 'runs' cannot be read to its end: Corruption: block " in output
    assert sst.name in output


async def test_a_log_record_failing_its_crc(tmp_path: Path) -> None:
    """The engine's own framing: a segment whose record fails its CRC32 (RocksDB's checksums
    cover the bytes as written, so only trine's own check sees a record written wrong)."""
    data_dir = tmp_path / "data"
    next_offset, _ = crash_after_acknowledged_runs(data_dir, runs=3)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    await engine.close()
    store = Store.open(data_dir)
    try:
        segment = bytearray(frame([b"\x12\x04abcd"]))
        segment[-1] ^= 0xFF
        batch = store.new_batch()
        store.put(batch, LOG, log_key(0, 2), bytes(segment))  # replaces offset 2's segment
        store.write(batch)
    finally:
        store.close()
    code, output = check(data_dir)
    assert code == 1
    assert "damaged: log record at partition 0 offset 2 is corrupt: it fails its CRC32 check\n" in (
        output
    )
    assert next_offset > 3


def test_runs_without_their_log_records(crashed: Path) -> None:
    """Derived state against the log: a run row no record created."""
    store = Store.open(crashed)
    try:
        from trine_engine.storage.keys import RUNS
        from trine_proto.codec import encode
        from trine_proto.trine.v1 import Run, RunStatus

        batch = store.new_batch()
        ghost = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"
        store.put(batch, RUNS, ghost.encode(), encode(Run(id=ghost, status=RunStatus.COMPLETED)))
        store.write(batch)
    finally:
        store.close()
    code, output = check(crashed)
    assert code == 1
    assert damaged_lines(output) == [f"damaged: run {ghost} has a row but no log record created it"]


def test_refuses_while_an_engine_holds_the_data_dir(crashed: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(crashed)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "open\n"
            done = subprocess.run(
                [sys.executable, "-c", RUN_MAIN, str(crashed)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            holder.kill()
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"trine check: error: {crashed} is in use by a running trine engine (its RocksDB lock "
        f"is held); stop it first: the check reads the data dir offline\n"
    )


HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from trine_engine.storage.store import Store\n"
    "store = Store.open(Path(sys.argv[1]))\n"
    "print('open', flush=True)\n"
    "time.sleep(60)\n"
)
RUN_MAIN = (
    "import sys\n"
    "from trine_engine.check import main\n"
    "sys.exit(main('trine check', ['--data-dir', sys.argv[1]]))\n"
)


def test_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("trine check", []) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main("trine check", ["--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"trine check: error: {tmp_path} holds no trine database\n"
    assert main("trine check", ["--help"]) == 0


async def test_a_damaged_table_footer(tmp_path: Path) -> None:
    """A table RocksDB cannot even open: reported, nothing else can be checked."""
    data_dir = tmp_path / "data"
    crash_after_acknowledged_runs(data_dir, runs=RUNS)
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    await engine.close()
    sst = runs_table(data_dir)
    with sst.open("r+b") as f:
        f.seek(sst.stat().st_size - 40)
        f.write(b"\0" * 40)
    code, output = check(data_dir)
    assert code == 1
    (line,) = damaged_lines(output)
    assert line.startswith("damaged: RocksDB refuses to open it: Corruption: Bad table magic ")
    assert sst.name in line
