"""Disk use under steady load with retention: does the data dir stay flat?

    .venv/bin/python bench/retention.py                                # --retention 2s, 120 s
    .venv/bin/python bench/retention.py --retention 2s,off --seconds 90 --concurrency 20

Starts trine (``--topology``, default ``all``) with ``TRINE_RETENTION`` set, one
``examples/order_worker.py``, and runs the `order` workload at a steady concurrency (each client
starts a run with ``?wait=60`` and starts the next once it completed) for ``--seconds``. Every
``--every`` seconds it prints a markdown row: the time, the runs completed so far and the rate
over the interval, the data dir's size (every file under it) split into SST tables, WAL and the
rest, and the engine's RSS. For each retention given (``2s,off`` runs both, one after the other,
each on a fresh data dir) a summary row gives the size's growth over the second half of the run
per 1,000 runs completed: near 0 with retention, the per-run footprint without.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from common import engine_proc, rss_now_mb, running_cluster, session, warn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import one_run  # the same `order` request the throughput bench makes

MB = 1024 * 1024


def sizes(data_dir: Path) -> dict[str, float]:
    """MB of the data dir: SST tables, WAL files, the rest (MANIFEST, OPTIONS, the marker)."""
    sst = wal = other = 0
    for path in data_dir.rglob("*"):
        try:
            size = path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:  # compaction removed it meanwhile
            continue
        if path.suffix == ".sst":
            sst += size
        elif path.suffix == ".log" and path.name[0].isdigit():
            wal += size
        else:
            other += size
    total = sst + wal + other
    return {"sst": sst / MB, "wal": wal / MB, "other": other / MB, "total": total / MB}


async def load(url: str, concurrency: int, seconds: float, done: list[int]) -> None:
    """``concurrency`` clients, each one run at a time, until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))
    async with session(concurrency) as http:

        async def client() -> None:
            while time.monotonic() < deadline:
                await one_run(http, url, next(counter))
                done[0] += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))


async def sample(
    data_dir: Path, engine: Any, every: float, seconds: float, done: list[int], label: str
) -> list[tuple[float, int, float]]:
    """Print a row every ``every`` seconds; the (time, runs, total MB) of each."""
    begun = time.monotonic()
    rows: list[tuple[float, int, float]] = []
    last_runs, last_at = 0, begun
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        size = sizes(data_dir)
        rate = (done[0] - last_runs) / (now - last_at)
        last_runs, last_at = done[0], now
        rows.append((now - begun, done[0], size["total"]))
        print(
            f"| {label} | {now - begun:6.0f} | {done[0]:7d} | {rate:6.0f} | {size['total']:8.2f} "
            f"| {size['sst']:7.2f} | {size['wal']:7.2f} | {size['other']:6.2f} "
            f"| {rss_now_mb(engine):7.1f} |",
            flush=True,
        )
        if now - begun >= seconds:
            return rows


async def one_retention(args: argparse.Namespace, retention: str) -> tuple[str, float, int]:
    with running_cluster(
        args.topology,
        f"retention-{retention}",
        prefix="trine-retention-",
        env={"TRINE_RETENTION": retention},
    ) as cluster:
        cluster.start_worker("order_worker.py", "--max-concurrency", str(args.concurrency))
        engine = engine_proc(cluster)
        done = [0]
        runner = asyncio.create_task(load(cluster.url, args.concurrency, args.seconds, done))
        rows = await sample(
            cluster.data_dir, engine, args.every, args.seconds, done, f"{retention:>9}"
        )
        await runner
        cluster.stop_runtime()
    half = [row for row in rows if row[0] >= args.seconds / 2]
    (_, runs_0, mb_0), (_, runs_1, mb_1) = half[0], half[-1]
    growth = (mb_1 - mb_0) / max(1, runs_1 - runs_0) * 1000
    return retention, growth, runs_1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retention", default="2s", help="one or more, comma-separated")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between rows")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--topology", default="all", choices=("all", "split"))
    args = parser.parse_args()
    print(
        "| retention | s | runs | runs/s | data dir MB | SST MB | WAL MB | other MB "
        "| engine RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = [asyncio.run(one_retention(args, r)) for r in args.retention.split(",")]
    print()
    print("| retention | runs | data dir growth over the second half, MB per 1,000 runs |")
    print("|---|---:|---:|")
    for retention, growth, runs in summary:
        print(f"| {retention} | {runs} | {growth:.3f} |")
    if any(runs == 0 for _, _, runs in summary):
        warn("a run completed nothing")


if __name__ == "__main__":
    main()
