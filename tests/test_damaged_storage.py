"""Damaged storage refuses to boot (issue 14): completed runs, ``kill -9`` of the runtime, then the
engine's newest RocksDB WAL file is damaged. The engine (``--target=all``, or the engine process
of ``split``) exits 2 with one line naming the damage, no traceback, and leaves the data dir as it
was; ``trine check`` reports the damage and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Cluster, start_order, wait_run

RUNS = 20


def completed_runs_then_crash(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker()
    with cluster.client() as http:
        ids = [start_order(http, order_id=f"o-{n}") for n in range(RUNS)]
        for run_id in ids:
            assert wait_run(http, run_id)["status"] == "completed"
    cluster.kill9_runtime()


def newest_wal(data_dir: Path) -> Path:
    wals = sorted(data_dir.glob("*.log"))
    assert wals, f"no WAL file in {data_dir}"
    return wals[-1]


def files(data_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in data_dir.iterdir()
        if p.is_file() and not p.name.startswith("LOG")
    }


def boot_refused(cluster: Cluster) -> str:
    """Start the process that opens the engine; it must exit 2 with one line: that line."""
    target = "all" if cluster.topology == "all" else "engine"
    argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
    proc = cluster.spawn(f"trine-{target}-again", argv)
    assert proc.popen.wait(timeout=60) == 2, proc.log.tail()
    errors = [line for line in proc.log.lines() if line.startswith("trine: error:")]
    assert len(errors) == 1, proc.log.tail()
    assert "Traceback" not in "\n".join(proc.log.lines())
    return errors[0]


def trine_check(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRINE_")}
    return subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "check", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("damage", ["64 bytes overwritten mid-file", "cut to half"])
def test_a_damaged_wal_refuses_to_boot(cluster: Cluster, damage: str) -> None:
    completed_runs_then_crash(cluster)
    wal = newest_wal(cluster.data_dir)
    size = wal.stat().st_size
    if damage == "cut to half":
        os.truncate(wal, size // 2)
    else:
        with wal.open("r+b") as f:
            f.seek(size // 2)
            f.write(b"\x5a" * 64)
    before = files(cluster.data_dir)

    line = boot_refused(cluster)

    assert line.startswith(f"trine: error: data dir {cluster.data_dir} is damaged: ")
    if damage == "cut to half":
        assert f"were acknowledged (trine-acked-0); its RocksDB write-ahead log ({wal.name})" in (
            line
        )
        assert "acknowledged writes are lost" in line
    else:
        assert f"RocksDB refuses its write-ahead log ({wal.name}): Corruption: " in line
    assert line.endswith(f"refusing to open it (trine check --data-dir {cluster.data_dir})")
    assert files(cluster.data_dir) == before  # nothing written: the evidence is intact

    checked = trine_check(cluster.data_dir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "damaged: " in checked.stdout
    assert "acknowledged writes are lost" in checked.stdout
    assert checked.stdout.endswith("problem(s)\n")


def test_a_crash_alone_boots_with_every_run(cluster: Cluster) -> None:
    """The control: the same crash without damage boots, every completed run still completed,
    and ``trine check`` finds the data dir sound."""
    completed_runs_then_crash(cluster)
    checked = trine_check(cluster.data_dir)
    assert (checked.returncode, checked.stdout) == (0, f"trine check: {cluster.data_dir}: sound\n")
    cluster.start()
    with cluster.client() as http:
        runs = http.get("/v1/runs", params={"limit": 100}).raise_for_status().json()["runs"]
    assert len(runs) == RUNS
    assert {run["status"] for run in runs} == {"completed"}
