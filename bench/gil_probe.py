"""Does rocksdict's synced ``Rdict.write`` release the GIL? (Decides whether the partition log
writes inline or in a thread; see ``trine_engine.storage.partition_log``.)

Runs the write in a worker thread while an asyncio task ticks on the event loop, and counts the
ticks that happen *inside* the write. A write that releases the GIL lets the loop tick hundreds of
times per millisecond; one that holds it lets it tick zero times. Also prints the synced write's
latency inline and through ``asyncio.to_thread``.

    .venv/bin/python bench/gil_probe.py [rounds]
"""

from __future__ import annotations

import asyncio
import bisect
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from rocksdict import Options, Rdict, WriteBatch, WriteOptions


def _batch(entries: int) -> Any:
    batch = WriteBatch(raw_mode=True)
    for _ in range(entries):
        batch.put(os.urandom(16), b"x" * 200)
    return batch


async def _probe(db: Any, sync: Any, entries: int, rounds: int) -> str:
    ticks: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    def timed_write(batch: Any) -> tuple[float, float]:
        begun = time.perf_counter()
        db.write(batch, sync)
        return begun, time.perf_counter()

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    spans = [await asyncio.to_thread(timed_write, _batch(entries)) for _ in range(rounds)]
    hops: list[float] = []
    for _ in range(rounds):
        batch = _batch(entries)
        begun = time.perf_counter()
        await asyncio.to_thread(db.write, batch, sync)
        hops.append((time.perf_counter() - begun) * 1000)
    running = False
    await task
    inline: list[float] = []
    for _ in range(rounds):
        batch = _batch(entries)
        begun = time.perf_counter()
        db.write(batch, sync)
        inline.append((time.perf_counter() - begun) * 1000)
    inside = [
        bisect.bisect_left(ticks, end) - bisect.bisect_right(ticks, start) for start, end in spans
    ]
    written = statistics.median((end - start) * 1000 for start, end in spans)
    return (
        f"{entries:5} entries: write p50 {written:.3f} ms, loop ticks inside the write "
        f"p50 {statistics.median(inside):.0f} max {max(inside)}; inline p50 "
        f"{statistics.median(inline):.3f} ms, to_thread p50 {statistics.median(hops):.3f} ms"
    )


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as path:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        db = Rdict(path, options)
        sync = WriteOptions()
        sync.sync = True
        for entries in (1, 64, 1024, 8192):
            print(await _probe(db, sync, entries, rounds))
        db.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
