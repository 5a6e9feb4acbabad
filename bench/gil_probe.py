"""Does rocksdict's synced ``Rdict.write`` release the GIL? And ``Rdict.flush_wal``? (Decides how
the partition log makes a commit durable; see ``trine_engine.storage.partition_log``.)

Runs the call in a worker thread while an asyncio task ticks on the event loop, and counts the
ticks that happen *inside* the call. A call that releases the GIL lets the loop tick hundreds of
times per millisecond; one that holds it lets it tick zero times. Per batch size:

- ``synced write``: ``Rdict.write`` with ``sync=True`` in the thread (what the engine did
  inline), and its latency inline and through ``asyncio.to_thread``;
- ``unsynced write + flush_wal``: what the engine does now: ``Rdict.write`` with ``sync=False``
  inline (the loop stalls for it), then ``Rdict.flush_wal(True)`` (RocksDB's ``SyncWAL``) in the
  thread, its ticks counted.

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
        f"{entries:5} entries, synced write: write p50 {written:.3f} ms, loop ticks inside the "
        f"write p50 {statistics.median(inside):.0f} max {max(inside)}; inline p50 "
        f"{statistics.median(inline):.3f} ms, to_thread p50 {statistics.median(hops):.3f} ms"
    )


async def _probe_flush_wal(db: Any, entries: int, rounds: int) -> str:
    unsynced = WriteOptions()
    unsynced.sync = False
    ticks: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    def timed_sync() -> tuple[float, float]:
        begun = time.perf_counter()
        db.flush_wal(True)
        return begun, time.perf_counter()

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    writes: list[float] = []
    spans: list[tuple[float, float]] = []
    for _ in range(rounds):
        batch = _batch(entries)
        begun = time.perf_counter()
        db.write(batch, unsynced)
        writes.append((time.perf_counter() - begun) * 1000)
        spans.append(await asyncio.to_thread(timed_sync))
    running = False
    await task
    inside = [
        bisect.bisect_left(ticks, end) - bisect.bisect_right(ticks, start) for start, end in spans
    ]
    synced = statistics.median((end - start) * 1000 for start, end in spans)
    return (
        f"{entries:5} entries, unsynced write + flush_wal: write (inline) p50 "
        f"{statistics.median(writes):.3f} ms; flush_wal (thread) p50 {synced:.3f} ms, loop "
        f"ticks inside it p50 {statistics.median(inside):.0f} min {min(inside)}"
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
            print(await _probe_flush_wal(db, entries, rounds))
        db.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
