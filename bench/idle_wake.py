"""What a process pays for having been idle: the same work timed back to back and after a sleep.

    .venv/bin/python bench/idle_wake.py                 # 3 rounds, 300 samples per gap
    .venv/bin/python bench/idle_wake.py --rounds 1 --samples 100

One run at a time, every process of a run (client, runtime, worker) waits for another before each
of its steps, so each step starts on a CPU that was idle a moment ago. Under load nobody waits
and the CPU stays busy. This prints how much slower that makes the same work on this machine,
for two kinds of work, after sleeping ``gap_ms`` before each sample (0: back to back):

  python_us       wall time of a fixed piece of Python (JSON round trips of an ``order`` input),
  python_cpu_us   and its CPU time: the interpreter itself runs slower, not just later
  write_us        one synced write to the engine's store (``Store.write``, a 1 KB log record and
                  the applied offset, as a commit of one report), wall time
  write_cpu_us    and the CPU it cost (CPU times: ``time.thread_time``, this thread's user +
                  system time: a synced write's kernel work, not RocksDB's own threads)

Medians of each gap's samples, taken in blocks of 20 in a row, the blocks of all gaps
shuffled (``one_round``). No trine process runs: only this one, on an otherwise quiet
machine (run nothing beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Columns, median_row, print_header, print_row, print_rows
from throughput import order_input

from trine_engine.storage.keys import LOG, META
from trine_engine.storage.store import Store

GAPS_MS = (0.0, 0.5, 1.0, 2.0, 5.0, 20.0)
BLOCK = 20
PYTHON_KEYS = ("python_us", "python_cpu_us")
WRITE_KEYS = ("write_us", "write_cpu_us")
COLUMNS: Columns = [
    ("gap_ms", "{:.1f}"),
    ("python_us", "{:.0f}"),
    ("python_cpu_us", "{:.0f}"),
    ("write_us", "{:.0f}"),
    ("write_cpu_us", "{:.0f}"),
]


def timed(work: Callable[[], None], gap_s: float) -> tuple[float, float]:
    """``work``'s wall and CPU time in µs, after sleeping ``gap_s``."""
    if gap_s:
        time.sleep(gap_s)  # the idle period under test
    started, cpu_started = time.perf_counter(), time.thread_time()
    work()
    return (time.perf_counter() - started) * 1e6, (time.thread_time() - cpu_started) * 1e6


def python_work() -> None:
    order = order_input(1)
    for _ in range(50):
        json.loads(json.dumps(order))


def synced_writes(store: Store) -> Callable[[], None]:
    record = os.urandom(1000)
    offset = 0

    def write() -> None:
        nonlocal offset
        offset += 1
        batch = store.new_batch()
        store.put(batch, LOG, offset.to_bytes(8, "big"), record)
        store.put(batch, META, b"applied", offset.to_bytes(8, "big"))
        store.write(batch, sync=True)

    return write


def one_round(samples: int, rng: random.Random) -> list[dict[str, Any]]:
    """The samples of each gap and kind of work come in blocks of :data:`BLOCK` in a row (so a
    gap of 0 is the same work back to back, as under load), the first of each block left out
    (it follows other work); the gaps' order is shuffled, so a drift of the machine's speed
    weighs on every gap alike."""
    times: dict[float, dict[str, list[float]]] = {
        gap: {key: [] for key, _ in COLUMNS[1:]} for gap in GAPS_MS
    }
    with tempfile.TemporaryDirectory(prefix="trine-idle-wake-") as tmp:
        store = Store.open(Path(tmp) / "data")
        try:
            write = synced_writes(store)
            gaps = list(GAPS_MS)
            for _ in range(max(1, samples // BLOCK)):
                rng.shuffle(gaps)
                for gap in gaps:
                    for work, keys in ((python_work, PYTHON_KEYS), (write, WRITE_KEYS)):
                        for sample in range(BLOCK + 1):
                            figures = timed(work, gap / 1000)
                            if sample == 0:
                                continue
                            for key, value in zip(keys, figures, strict=True):
                                times[gap][key].append(value)
        finally:
            store.close()
    return [
        {"gap_ms": gap, **{key: statistics.median(v) for key, v in times[gap].items()}}
        for gap in GAPS_MS
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=300)
    args = p.parse_args()
    rounds: list[list[dict[str, Any]]] = []
    rng = random.Random(15)
    print_header(COLUMNS)
    for number in range(1, args.rounds + 1):
        rows = one_round(args.samples, rng)
        rounds.append(rows)
        print_rows(COLUMNS, str(number), rows)
    if args.rounds > 1:
        print("\nMedians over the rounds:\n")
        print_header(COLUMNS)
        for i, _ in enumerate(GAPS_MS):
            print_row(COLUMNS, "median", median_row(COLUMNS, [r[i] for r in rounds], ()))


if __name__ == "__main__":
    main()
