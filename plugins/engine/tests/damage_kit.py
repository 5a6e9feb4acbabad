"""Real crashes and real damage for the damaged-storage tests (test_damaged_storage, test_check)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

RUNS = 200

# Starts RUNS runs of "order" one by one, completes each with one step, prints the next offset
# and the run ids, then dies by SIGKILL: nothing is flushed, every acknowledged write lives in the
# WAL only.
WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
from trine_engine import Engine, EngineConfig
from trine_proto.trine.v1 import (
    Command, FunctionSpec, JournalEntry, RegisterFunctionsRequest, ReportRequest, RunCompleted,
    StartRunRequest, StepCompleted, StepStarted, TakeWorkRequest,
)

async def main(data_dir: str, runs: int, finish: bool) -> None:
    engine = await Engine.open(EngineConfig(data_dir=Path(data_dir)))
    await engine.dispatcher.register_functions(
        RegisterFunctionsRequest(worker_id="w", functions=[FunctionSpec(name="order")])
    )
    ids = []
    for n in range(runs):
        started = await engine.backend.start_run(
            StartRunRequest(function="order", input=b'{"n": %d}' % n)
        )
        ids.append(started.run.id)
    while finish:
        taken = await engine.dispatcher.take_work(
            TakeWorkRequest(worker_id="w", functions=["order"], max_items=50)
        )
        if not taken.items:
            break
        for item in taken.items:
            entry = JournalEntry(index=0, name="charge", output=b'"ok"', attempt=1)
            for commands in (
                [Command(step_started=StepStarted(index=0, name="charge", attempt=1))],
                [Command(step_completed=StepCompleted(entry=entry))],
                [Command(run_completed=RunCompleted(result=b'"done"'))],
            ):
                await engine.dispatcher.report(
                    ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=commands)
                )
    print("ACKED", engine.stats().next_offset, " ".join(ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "finish"))
"""


def crash_after_acknowledged_runs(
    data_dir: Path, runs: int = RUNS, finish: bool = True
) -> tuple[int, list[str]]:
    """A real engine process acknowledges ``runs`` runs (completed unless not ``finish``), then
    is killed (SIGKILL): (its next offset, the run ids)."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(data_dir), str(runs), "finish" if finish else "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("ACKED "))
    _, next_offset, *ids = line.split()
    return int(next_offset), ids


def newest_wal(data_dir: Path) -> Path:
    wals = sorted(data_dir.glob("*.log"))
    assert wals, "no WAL file"
    return wals[-1]


def overwrite_middle(path: Path, size: int = 64) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xa5" * size)


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every RocksDB file's bytes (the info logs aside, which every open rotates)."""
    return {
        p.name: p.read_bytes()
        for p in data_dir.iterdir()
        if p.is_file() and not p.name.startswith("LOG")
    }


def runs_table(data_dir: Path) -> Path:
    """The SST file of the ``runs`` family."""
    families = Rdict.list_cf(str(data_dir), Options(raw_mode=True))
    db = Rdict(
        str(data_dir),
        Options(raw_mode=True),
        column_families={name: Options(raw_mode=True) for name in families},
        access_type=AccessType.read_only(),
    )
    try:
        files = db.live_files()
    finally:
        db.close()
    # rocksdict names no family: the runs' keys are ids, none deleted, and their rows are larger
    # than the empty ones of `active`
    tables = [
        info
        for info in files
        if len(info["start_key"]) == 26 and info["num_entries"] == RUNS
        if not info["num_deletions"]
    ]
    assert tables, f"no SST of the runs family in {files}"
    return data_dir / max(tables, key=lambda info: info["size"])["name"].lstrip("/")
