"""A partition's log with a group-commit appender.

Every state change is a ``LogRecord``. ``append`` gives the record the next offset and returns the
:class:`AppendBatch` it joined; the caller (the state machine) adds its derived-state writes to that
same batch, with no ``await`` in between, then awaits :meth:`AppendBatch.durable`. The first append
into an empty batch schedules a flush for the next turn of the event loop, so every append made
before that turn shares one ``WriteBatch``: the log segment, the derived state, the applied offset,
one synced write. A caller is answered only once its batch is durable.

Why the write runs inline, on the event loop: rocksdict's ``Rdict.write`` holds the GIL for the
whole write, fsync included (measured on a 2-core box: during a synced write in a worker thread the
event loop advanced 0 times, whether the batch held 1 entry, 0.23 ms, or 8,192 entries, 23 ms; the
source calls ``db.write_opt`` without ``allow_threads``). A thread would free nothing and add a
hand-off (p50 0.18 → 0.44 ms for a 1-entry batch). Appends still batch: everything that reaches
the loop while one batch is written joins the next.

A failed write is fatal: the batch's callers get StorageError, the failure is logged, and every
later append is refused. Nothing that was not durable is ever acknowledged. The error callers get
is generic (``WRITE_FAILED``: an HTTP client sees no path); the log line says what failed. Reads
go on (``ensure_readable``): they answer durable state only, which the failed write did not touch.

After each synced write, before anyone is answered, the batch's end is recorded in the
acknowledged marker (``marker``: a store into a mapped page, synced at most once a second), so
a database whose WAL later loses acknowledged writes is refused at open, not opened rolled back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
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


class AppendBatch:
    """Records and derived-state writes that one synced write makes durable together."""

    def __init__(self, store: Store, first_offset: int, loop: asyncio.AbstractEventLoop) -> None:
        self.first_offset = first_offset
        self.records: list[bytes] = []
        self.started: list[float] = []
        self.write_batch: Any = store.new_batch()
        self.future: asyncio.Future[None] = loop.create_future()
        self._store = store
        self.callbacks: list[Callable[[], None]] = []

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
        a cancelled caller does not cancel the batch its neighbours wait on."""
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
            batch = self._pending = AppendBatch(self._store, self._next_offset, loop)
            loop.call_soon(self.flush)
        batch.records.append(encode(record))
        batch.started.append(time.perf_counter())
        self._next_offset += 1
        return batch

    def flush(self) -> None:
        """Write the gathered batch now (synced). Called by the loop; also at close."""
        batch, self._pending = self._pending, None
        if batch is None or not batch.records:
            return
        if self._failure is not None:  # poisoned while gathering: write nothing of it
            batch.future.set_exception(self._failure)
            batch.future.exception()
            return
        begun = time.perf_counter()
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
            self._store.write(batch.write_batch)
            if self._marker is None:  # created with the first commit's end
                self._marker = AckMarker(self._store.path, self.partition, batch.last_offset + 1)
            else:
                self._marker.record(batch.last_offset + 1)
        except Exception as exc:
            self._fail(batch, exc)
            return
        done = time.perf_counter()
        self.commit_latency.add((done - begun) * 1000)
        metrics.JOURNAL_COMMIT.observe(done - begun)
        metrics.JOURNAL_BATCH.observe(len(batch.records))
        observe_append = metrics.JOURNAL_APPEND.observe
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
        if self._pending is not None:
            await self._pending.durable()

    def close(self) -> None:
        """Write what is gathered, sync the acknowledged marker, then refuse appends."""
        try:
            self.flush()
        finally:
            self._closed = True
            if self._marker is not None:
                self._marker.close()

    # -- reading ---------------------------------------------------------------------------------

    def read_log(self, from_offset: int = 0) -> Iterator[tuple[int, LogRecord]]:
        """``(offset, record)`` from ``from_offset`` on, each record's CRC checked. Exhaust or
        close the iterator before closing the engine: its RocksDB iterator holds the database."""
        return read_log(self._store, self.partition, from_offset)


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
