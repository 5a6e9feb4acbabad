"""A partition's log with a group-commit appender.

Every state change is a ``LogRecord``. ``append`` gives the record the next offset and returns the
:class:`AppendBatch` it joined; the caller (the state machine) adds its derived-state writes to that
same batch, with no ``await`` in between, then awaits :meth:`AppendBatch.durable`. The batch is
written (:meth:`PartitionLog.pump`) at the first such ``await``, or on the loop's next turn, unless
an fsync is in flight: then every append made until that fsync returns joins it, so one
``WriteBatch`` (the log segment, the derived state, the applied offset) and one fsync cover them
all. A caller is answered only once its batch is durable (its WAL records fsynced).

Why the write and the fsync are apart: rocksdict's ``Rdict.write`` holds the GIL for the whole
write, fsync included (``bench/gil_probe.py``: during a synced write in a worker thread the event
loop advanced 0 times; the source calls ``db.write_opt`` without ``allow_threads``), so a synced
write stalled every role on the loop for its fsync (0.3 to 0.5 ms a commit, more under load), and a
thread running it would free nothing. ``Rdict.flush_wal(True)`` (RocksDB's ``SyncWAL``) does
release the GIL. So the flush writes the batch *unsynced*, inline (RocksDB appends it to the WAL
file with one ``write(2)`` and to the memtable: ≈40 µs for a commit of one record), and a sync
thread (:data:`SYNC_THREAD`) fsyncs the WAL while the loop goes on; once the fsync has returned,
the loop records the acknowledged marker, answers the batch, and writes the batch gathered
meanwhile. One fsync at a time: the next one is asked for only after the last one returned.
A lone record on an idle log is the exception: it is written synced, inline
(:data:`INLINE_AFTER_IDLE_S` says why).

What that changes, and what not (docs/internals.md, "Storage"): an unsynced batch is in the OS's
page cache, so the death of the process (``kill -9``, a crash) loses nothing written, acknowledged
or not; an operating-system crash or a power loss can lose what the fsync in flight did not
finish, none of it acknowledged. RocksDB's ``SyncWAL`` fsyncs every WAL file written since the last
sync, an older one that a memtable switch closed too, and the WAL directory once a new WAL file
was created. An unsynced batch is readable in RocksDB before it is durable: readers go through the
cache's durable views and :meth:`barrier` (which waits for the fsync in flight too), and a listing
from RocksDB skips the runs whose creation is not durable yet.

A failed write or fsync is fatal: the callers of every batch it leaves not durable get
StorageError, the failure is logged, and every later append is refused. Nothing that was not
durable is ever acknowledged. The error callers get is generic (``WRITE_FAILED``: an HTTP client
sees no path); the log line says what failed. Reads go on (``ensure_readable``): the engine puts
its memory back to what RocksDB holds (``RunCache.revert_to_durable``). After a failed *write*
that is exactly what is durable; after a failed *fsync* RocksDB may also hold the batch that fsync
did not cover, which a restart finds in the WAL if the OS still wrote it (nobody was told it was
done, so either way nothing acknowledged is lost).

After each fsync, before anyone is answered, the end of the last batch it covered is recorded in
the acknowledged marker (``marker``: a store into a mapped page, synced at most once a second), so
a database whose WAL later loses acknowledged writes is refused at open, not opened rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import structlog

from trine_core import StorageError, Unavailable, get_logger
from trine_engine import metrics
from trine_engine.storage import framing
from trine_engine.storage.keys import (
    LOG,
    META,
    applied_key,
    decode_log_key,
    decode_u64,
    encode_u64,
    log_key,
    log_start_key,
    partition_prefix,
)
from trine_engine.storage.latency import LatencyRing
from trine_engine.storage.marker import AckMarker
from trine_engine.storage.store import Store, check_marker
from trine_proto.codec import decode, encode
from trine_proto.trine.engine.v1 import LogRecord

_LAST_OFFSET = (1 << 64) - 1
WRITE_FAILED = (
    "the engine's storage failed a write and it accepts no more changes until it is "
    "restarted; reads are still served"
)

SYNC_THREAD = "trine-wal-sync"
"""The name of a partition log's thread that fsyncs its WAL (one per open log, idle between
commits)."""

INLINE_AFTER_IDLE_S = 0.0002
"""A batch of one record, appended at least this long after the last commit was answered, is
written synced, inline, instead of through the sync thread. Nothing else is gathering then, so
freeing the loop during its fsync buys nothing, and the hand-off costs: two GIL switches and a
wake-up of the loop (measured alone, with ``bench/interleave.py`` at 20 runs at once: append p50
0.95 → 1.17 ms and p99 7.3 → 14.5 ms through the thread). Under load an fsync is nearly always in
flight when a record comes, so batches go through the thread and keep gathering. Only while
the last commit took at most :data:`INLINE_MAX_COMMIT_S`: the inline write holds the GIL through
its fsync, stopping every role on the loop.

Idle means quiet for 0.2 ms, and for at least as long as the last commit took. 0.2 ms is
shorter than a step's round trip on this machine (a report's commit is answered, the worker runs
the next step, its report comes: 0.6 ms and more); at 1 ms a lone run's last commit went through
the thread in most runs on a quick day, and the quicker the worker, the slower its commits
(docs/performance.md, "A lone run, hop by hop"). The last commit's time guards the other side:
records that queued behind an inline fsync come that soon after it (their own processing, about
0.2 ms each, counts as quiet), and each would otherwise get an inline fsync of its own, one after
another, instead of gathering behind one in the thread."""

INLINE_MAX_COMMIT_S = 0.002
"""The slowest last commit (write to answer) after which a lone record is still synced inline. On
a disk whose fsync takes longer, every record goes through the sync thread, and the loop runs on
during the fsync; once commits are this fast again, lone records are synced inline again."""

SWITCH_INTERVAL_S = 0.0001
"""The interpreter's thread switch interval once the sync thread runs (``sys.setswitchinterval``,
lowered to it, never raised). A thread that wants the GIL waits for the holder to release it, at
most this long while the holder runs Python (CPython's default: 5 ms). The sync thread needs it
twice per fsync (to start it, and on its return), while the event loop is busiest. Measured in
the engine at c100 (``bench/throughput.py``, ``all``, timing each fsync's hand-offs): at 0.5 ms
the thread waited 1.1 ms (p50) to start an fsync and the fsync took 1.5 ms with its return; at
0.1 ms, 0.37 and 0.8 ms (docs/performance.md). Only threads that contend for the GIL are
affected: the loop alone is never interrupted."""


class AppendBatch:
    """Records and derived-state writes that one write and one WAL fsync make durable together."""

    def __init__(
        self,
        store: Store,
        first_offset: int,
        loop: asyncio.AbstractEventLoop,
        pump: Callable[[], None] | None = None,
    ) -> None:
        self.first_offset = first_offset
        self.records: list[bytes] = []
        self.started: list[float] = []
        self.write_batch: Any = store.new_batch()
        self.future: asyncio.Future[None] = loop.create_future()
        self._store = store
        self.callbacks: list[Callable[[], None]] = []
        self.written = 0.0  # perf_counter() when its write began
        self._pump = pump

    @property
    def last_offset(self) -> int:
        return self.first_offset + len(self.records) - 1

    def put(self, family: str, key: bytes, value: bytes) -> None:
        self._store.put(self.write_batch, family, key, value)

    def delete(self, family: str, key: bytes) -> None:
        self._store.delete(self.write_batch, family, key)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the batch is durable (event fan-out, making runs dispatchable);
        never if the write fails."""
        self.callbacks.append(callback)

    async def durable(self) -> None:
        """Return once the batch is durable; raise StorageError if its write failed. Shielded:
        a cancelled caller does not cancel the batch its neighbours wait on. Drives the group
        commit first (``PartitionLog.pump``): every caller gets here once its appends are
        applied, so a batch gathered so far is complete."""
        if self._pump is not None and not self.future.done():
            self._pump()
        await asyncio.shield(self.future)


class PartitionLog:
    def __init__(
        self,
        store: Store,
        partition: int = 0,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        self.partition = partition
        self._store = store
        self._log = log or get_logger("engine")
        self._next_offset = self._recover()
        self._marker: AckMarker | None = None  # opened by the first commit
        self._pending: AppendBatch | None = None
        self._syncing: list[AppendBatch] = []  # written, the fsync in flight covers it
        self._sync_thread: ThreadPoolExecutor | None = None  # started by the first flush
        self._sync_done: Future[None] | None = None  # the fsync in flight, or the last one
        self._last_settled = 0.0  # perf_counter() when the last commit's callers were answered
        self._last_commit_s = 0.0  # how long the last commit took, from its write to its answer
        self._failure: StorageError | None = None
        self._failure_callbacks: list[Callable[[StorageError], None]] = []
        self._closed = False
        self.append_latency = LatencyRing()
        self.commit_latency = LatencyRing()
        self.batches = 0
        self.records = 0

    def _recover(self) -> int:
        """The next offset, after checking the whole log: every record's CRC32, offsets without
        a gap, the last one the applied offset (both are written in one batch), the acknowledged
        marker not ahead of it. Any failure is one line naming the data dir and the damage."""
        path = self._store.path
        raw = self._store.get(META, applied_key(self.partition))
        applied = None if raw is None else decode_u64(raw)
        check_marker(path, self.partition, applied)
        try:
            end = self._verify()
        except StorageError as exc:
            if exc.details.get("offset") is None:  # a read that failed: Engine.open names it
                raise
            raise StorageError(
                f"data dir {path} is damaged: {exc.message}; refusing to open it "
                f"(trine check --data-dir {path})",
                **exc.details,
            ) from None
        if end is None and applied is None:
            return 0
        if end != applied:
            raise StorageError(
                f"data dir {path} is damaged: partition {self.partition}'s log ends at offset "
                f"{end} but the state was applied up to offset {applied}; refusing to open it "
                f"(trine check --data-dir {path})"
            )
        return applied + 1 if applied is not None else 0

    def _verify(self) -> int | None:
        """The log's last offset (None: empty), every segment read (RocksDB verifies its blocks)
        and every record's CRC32 checked: about 2.7 µs a record (0.53 s for 200,000), once per
        open: retention keeps it to about the retention's span of history."""
        end: int | None = None
        raw = self._store.get(META, log_start_key(self.partition))
        start = 0 if raw is None else decode_u64(raw)  # retention trimmed what is before it
        for key, segment in self._store.scan(LOG, prefix=partition_prefix(self.partition)):
            first = decode_log_key(key)[1]
            if end is None and first != start:
                raise StorageError(
                    f"partition {self.partition}'s log starts at offset {first}, not at "
                    f"{start} where retention left it",
                    partition=self.partition,
                    offset=start,
                )
            if end is not None and first != end + 1:
                raise StorageError(
                    f"partition {self.partition}'s log lacks offsets {end + 1}..{first - 1}",
                    partition=self.partition,
                    offset=end + 1,
                )
            end = first + framing.count(segment, self.partition, first) - 1
        return end

    # -- appending -------------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        return self._next_offset

    @property
    def failure(self) -> StorageError | None:
        return self._failure

    @property
    def closed(self) -> bool:
        return self._closed

    def ensure_writable(self) -> None:
        """Raise the write failure that stopped the log, or Unavailable once it is closed: every
        call into the engine that may change state starts here, so none acts on state the log
        can no longer extend."""
        if self._failure is not None:
            raise self._failure
        self.ensure_readable()

    def ensure_readable(self) -> None:
        """Raise Unavailable once the log is closed. A write failure does not stop reads: what
        readers see is durable state only, which a failed write did not touch."""
        if self._closed:
            raise Unavailable("the engine is stopped")

    def on_failure(self, callback: Callable[[StorageError], None]) -> None:
        """Call ``callback`` once, with the generic error, when a write or an apply fails (the
        engine role then stops its process after a grace period, for a supervisor to restart)."""
        self._failure_callbacks.append(callback)

    def append(self, record: LogRecord) -> AppendBatch:
        """Give ``record`` the next offset in the batch being gathered and return that batch."""
        self.ensure_writable()
        batch = self._pending
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._pending = AppendBatch(self._store, self._next_offset, loop, self.pump)
            loop.call_soon(self.pump)
        batch.records.append(encode(record))
        batch.started.append(time.perf_counter())
        self._next_offset += 1
        return batch

    def pump(self) -> None:
        """Drive the group commit: answer the batches of an fsync that returned, then, unless
        an fsync is in flight, write the gathered batch and start one for it. Called at every
        ``AppendBatch.durable`` (so a commit is answered as soon as any caller passes by, not a
        turn of a saturated loop later), by the loop on the turn after an append, and by the
        sync thread through the loop when its fsync returns."""
        done = self._sync_done
        if done is not None:
            if not done.done():
                return  # what is gathered waits for the next fsync
            self._sync_done = None
            batches, self._syncing = self._syncing, []
            # On an error the log refuses everything after (the gathered batch too, in flush):
            # a later fsync may report success for pages the kernel dropped after this one failed.
            self._settle(batches, done.exception())
        self.flush()

    def flush(self) -> None:
        """Write the gathered batch now, unsynced, and start an fsync for it (none is in
        flight: ``pump`` sees to it)."""
        batch, self._pending = self._pending, None
        if batch is None or not batch.records:
            return
        if self._failure is not None:  # poisoned while gathering: write nothing of it
            batch.future.set_exception(self._failure)
            batch.future.exception()
            return
        batch.written = time.perf_counter()
        lone = (
            len(batch.records) == 1
            and batch.started[0] - self._last_settled
            >= max(INLINE_AFTER_IDLE_S, self._last_commit_s)
            and self._last_commit_s <= INLINE_MAX_COMMIT_S
        )
        try:
            self._store.put(
                batch.write_batch,
                LOG,
                log_key(self.partition, batch.first_offset),
                framing.frame(batch.records),
            )
            self._store.put(
                batch.write_batch, META, applied_key(self.partition), encode_u64(batch.last_offset)
            )
            self._store.write(batch.write_batch, sync=lone)
        except Exception as exc:
            self._fail(batch, exc)
            return
        if lone:  # durable already: answered now (INLINE_AFTER_IDLE_S says why)
            self._settle([batch], None)
            return
        self._syncing = [batch]
        if self._sync_thread is None:
            # Lowered, never raised: the sync thread needs the GIL back after each fsync, and a
            # busy loop would keep it for up to the interval (CPython's default, 5 ms).
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
            self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix=SYNC_THREAD)
        self._sync_done = self._sync_thread.submit(self._store.sync_wal)
        loop = asyncio.get_running_loop()
        self._sync_done.add_done_callback(lambda _: _call_soon(loop, self.pump))

    def _settle(self, batches: list[AppendBatch], error: BaseException | None) -> None:
        """Answer ``batches`` (written, in offset order) once the fsync that covered them
        returned: on success, the acknowledged marker first, then each batch's callers; on
        failure, each gets the StorageError and the log refuses every later append."""
        if not batches:
            return
        if error is not None:
            for batch in batches:
                self._fail(batch, error if isinstance(error, Exception) else Exception(error))
            return
        try:
            last = batches[-1].last_offset + 1
            if self._marker is None:  # created with the first commit's end
                self._marker = AckMarker(self._store.path, self.partition, last)
            else:
                self._marker.record(last)
        except Exception as exc:
            for batch in batches:
                self._fail(batch, exc)
            return
        done = time.perf_counter()
        observe_append = metrics.JOURNAL_APPEND.observe
        for batch in batches:
            self.commit_latency.add((done - batch.written) * 1000)
            metrics.JOURNAL_COMMIT.observe(done - batch.written)
            metrics.JOURNAL_BATCH.observe(len(batch.records))
            for started in batch.started:
                self.append_latency.add((done - started) * 1000)
                observe_append(done - started)
            self.batches += 1
            self.records += len(batch.records)
            for callback in batch.callbacks:
                try:
                    callback()
                except Exception:  # one broken subscriber must not stop the others
                    self._log.exception("after-commit callback failed")
            batch.future.set_result(None)
        self._last_commit_s = done - batches[-1].written
        self._last_settled = time.perf_counter()

    def _fail(self, batch: AppendBatch, exc: Exception) -> None:
        self._log.error(
            "log write failed; refusing every further change",
            partition=self.partition,
            first_offset=batch.first_offset,
            last_offset=batch.last_offset,
            error=str(exc),
        )
        batch.future.set_exception(self._stop_changes())
        batch.future.exception()  # retrieved: callers may all have gone

    def poison(self, offset: int, exc: BaseException) -> None:
        """Applying the record at ``offset`` failed after it joined a batch: that batch must not
        be written (its derived state would be partial), and nothing after it either."""
        self._log.error(
            "applying a record failed; refusing every further change",
            partition=self.partition,
            offset=offset,
            error=repr(exc),
        )
        self._stop_changes()

    def _stop_changes(self) -> StorageError:
        """Refuse every later change with one generic StorageError, returned (what failed, with
        paths and offsets, is in the log line just written: callers and HTTP clients get none)."""
        if self._failure is not None:
            return self._failure
        failure = self._failure = StorageError(WRITE_FAILED)
        for callback in self._failure_callbacks:
            try:
                callback(failure)
            except Exception:
                self._log.exception("a write-failure callback failed")
        return failure

    async def barrier(self) -> None:
        """Return once everything appended so far is durable (reads use it so they never answer
        with state that a crash could still take back)."""
        if self._failure is not None:
            raise self._failure
        last = self._pending or (self._syncing[-1] if self._syncing else None)
        if last is not None:  # batches settle in offset order: the last one settles last
            await last.durable()

    def close(self) -> None:
        """Wait for the fsync in flight and answer its batch, write what is gathered, fsync
        and answer it too (blocking the loop: nothing may use the store after), sync the
        acknowledged marker, then refuse appends."""
        try:
            self.pump()
            while self._sync_done is not None:  # the one in flight, then the gathered batch's
                wait([self._sync_done])
                self.pump()
        finally:
            if self._sync_thread is not None:
                self._sync_thread.shutdown(wait=True)
                self._sync_thread = None
            self._closed = True
            if self._marker is not None:
                self._marker.close()

    # -- reading ---------------------------------------------------------------------------------

    def read_log(self, from_offset: int = 0) -> Iterator[tuple[int, LogRecord]]:
        """``(offset, record)`` from ``from_offset`` on, each record's CRC checked. Exhaust or
        close the iterator before closing the engine: its RocksDB iterator holds the database."""
        return read_log(self._store, self.partition, from_offset)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Run ``callback`` on ``loop`` (from the sync thread), unless the loop is gone."""
    with contextlib.suppress(RuntimeError):  # closed: close() answered what was in flight
        loop.call_soon_threadsafe(callback)


def read_log(store: Store, partition: int, from_offset: int = 0) -> Iterator[tuple[int, LogRecord]]:
    """``(offset, record)`` of ``partition``'s log in ``store`` from ``from_offset`` on, each
    record's CRC checked: a corrupt one raises StorageError naming its partition and offset."""
    prefix = partition_prefix(partition)
    start = log_key(partition, from_offset)
    containing = store.last_before(LOG, start)
    begin = containing[0] if containing and containing[0].startswith(prefix) else start
    for key, segment in store.scan(LOG, start=begin, prefix=prefix):
        first = decode_log_key(key)[1]
        for offset, raw in framing.unframe(segment, partition, first):
            if offset < from_offset:
                continue
            try:
                record = decode(LogRecord, raw)
            except Exception as exc:
                raise StorageError(
                    f"log record at partition {partition} offset {offset} cannot be decoded: {exc}",
                    partition=partition,
                    offset=offset,
                ) from exc
            yield offset, record
