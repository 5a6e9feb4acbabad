"""Where a held SSE stream's memory goes: tracemalloc in `trine --target=all`, by trine frame.

    .venv/bin/python bench/sse_memory.py                 # 2,000 approval runs, then 2,000 streams
    .venv/bin/python bench/sse_memory.py --streams 500 --top 40

A fresh trine (`all`) and one `examples/approval_worker.py`; N `approval` runs are started and
left waiting for their signal. Then tracemalloc starts in the runtime (10 frames), a snapshot is
taken (the base), one event stream per run is opened and held (each showing `signal.waiting`),
and a second snapshot is taken. The difference, divided by N, is what one held stream costs in
Python objects (tracemalloc sees Python's allocations, not the C libraries': RSS per stream, as
`bench/sse.py` reports it, is higher).

Each allocation is charged to its innermost frame in trine's own code (`trine_gateway/sse.py:97`),
so a row is "what this line of ours caused, in us or in the libraries under it"; allocations with
no trine frame are charged to their innermost file. The runtime's tracemalloc is driven through
a `sitecustomize` put on the runtime's PYTHONPATH (a thread that starts it and dumps snapshots
on request), so the runtime's own code is unchanged; tracing slows the runtime, so no timing
is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sse
from common import bounded, gateway_proc, rss_now_mb, running_cluster, start_runs

SITECUSTOMIZE = """
import os, sys, threading, time, tracemalloc
probe = os.environ.get("TRINE_BENCH_MEMPROBE")
if probe and any(a.startswith("--target") for a in sys.argv):
    def _serve():
        request = os.path.join(probe, "request")
        while True:
            time.sleep(0.2)
            try:
                label = open(request).read().strip()
                os.remove(request)
            except OSError:
                continue
            if label == "start":
                tracemalloc.start(10)
            else:
                tracemalloc.take_snapshot().dump(os.path.join(probe, label + ".snapshot"))
            open(os.path.join(probe, label + ".done"), "w").close()
    threading.Thread(target=_serve, daemon=True).start()
"""


def ask(probe: Path, label: str, timeout: float = 300) -> None:
    """Have the runtime start tracing (``start``) or dump a snapshot (``label``), and wait."""
    (probe / "request").write_text(label)
    deadline = time.monotonic() + timeout
    while not (probe / f"{label}.done").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the runtime did not answer {label!r}")
        time.sleep(0.1)


async def hold_and_dump(url: str, ids: list[str], probe: Path, seconds: float) -> int:
    """Open one stream per run, wait until each shows ``signal.waiting``, dump ``held``."""
    streams = [sse.Stream(i, run_id) for i, run_id in enumerate(ids)]
    async with sse.stream_session() as http:
        gate = asyncio.Semaphore(200)
        tasks = [asyncio.create_task(sse.follow(http, url, s, gate)) for s in streams]
        try:
            if not await sse.wait_streams(streams, "waiting", seconds):
                raise TimeoutError("not every stream showed signal.waiting")
            await asyncio.to_thread(ask, probe, "held")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return sum(1 for s in streams if s.waiting and not s.error)


def charge(snapshot_diff: list[tracemalloc.StatisticDiff]) -> tuple[Counter[str], Counter[str]]:
    """Bytes and objects by the innermost trine frame of each allocation."""
    size: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for stat in snapshot_diff:
        frames = list(stat.traceback)[::-1]  # the most recent first
        key = next(
            (
                f"{f.filename.split('/src/')[-1]}:{f.lineno}"
                for f in frames
                if "/src/trine" in f.filename
            ),
            f"(no trine frame) {frames[0].filename.split('site-packages/')[-1]}",
        )
        size[key] += stat.size_diff
        count[key] += stat.count_diff
    return size, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000, help="runs, and streams held")
    parser.add_argument("--top", type=int, default=25, help="rows printed")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each phase may take")
    args = parser.parse_args()
    n = args.streams
    with tempfile.TemporaryDirectory(prefix="trine-memprobe-") as tmp:
        probe = Path(tmp)
        (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {
            "TRINE_BENCH_MEMPROBE": str(probe),
            "PYTHONPATH": str(probe),
            "TRINE_GATEWAY_MAX_CONNECTIONS": str(n + 500),
        }
        with running_cluster("all", "sse-memory", env=env) as cluster:
            cluster.start_worker("approval_worker.py")
            inputs = [
                {"function": "approval", "input": {"request": f"r-{i}", "sleep_s": 0}}
                for i in range(n)
            ]
            ids = asyncio.run(
                bounded("starting runs", args.timeout, start_runs(cluster.url, inputs, 20))
            )
            asyncio.run(bounded("runs settling", args.timeout, sse.until_settled(cluster.url)))
            ask(probe, "start")
            ask(probe, "base")
            base_rss = rss_now_mb(gateway_proc(cluster))
            held = asyncio.run(hold_and_dump(cluster.url, ids, probe, args.timeout))
            held_rss = rss_now_mb(gateway_proc(cluster))
            cluster.stop_runtime()
        base = tracemalloc.Snapshot.load(str(probe / "base.snapshot"))
        after = tracemalloc.Snapshot.load(str(probe / "held.snapshot"))
    size, count = charge(after.compare_to(base, "traceback"))
    print(f"{held} of {n} streams held; runtime RSS {base_rss:.0f} → {held_rss:.0f} MB (traced)")
    print(f"Python objects per held stream: {sum(size.values()) / n / 1024:.1f} KB\n")
    print("| bytes per stream | objects per stream | charged to |")
    print("|---|---|---|")
    for key, total in size.most_common(args.top):
        print(f"| {total / n:,.0f} | {count[key] / n:.1f} | `{key}` |")


if __name__ == "__main__":
    main()
