"""Retention: a finished run is deleted ``retention`` after it ended, and the log is trimmed.

Why a sweep over an index, in the background: the batch that ends a run also writes
``ended/<ended_at><run id>`` in ``meta`` (``StateMachine.store_run``), so finding what expired is
one ordered scan from the start of that index to the cutoff, never a scan of every run. Every
:data:`SWEEP_INTERVAL_MAX_MS` at most (a quarter of the retention when shorter), the sweep deletes
up to :data:`BATCH_RUNS` expired runs in one synced write: per run its ``runs`` row, its
idempotency key, one range delete each over its ``journal``, ``events``, ``attempts`` and
``signals`` rows (a range tombstone, whatever the number of rows), and its index row; it leaves a
tombstone (``expired/<run id>``: 42 bytes) so the run answers ``run_expired``, itself deleted one
retention later (``forget/``). A full batch is followed by another at once, after a turn of the
event loop.

It is not a log record: retention deletes derived state nobody can change any more (a final run
whose parent is final too), and the log, which it trims, does not have to replay it. The sweep
runs on the event loop with no ``await`` between its reads and its write, so no command is applied
in between; a run retried meanwhile is in the active set and is skipped (its index row goes: its
next end writes a new one). A child whose parent is not final is kept until the parent ends.

The log: each sweep records ``logmark/<partition>/<now>`` → the applied offset + 1 (at most
every eighth of the retention), and range-deletes the segments wholly before the newest mark
older than the retention, recording where the log now starts (``logstart/<partition>``) in the
same write. Opening checks the log from there (``PartitionLog._verify``); the last segment is never
trimmed, so the log still ends at the applied offset. Recovery needs no trimmed record: the
derived state commits with the log (docs/internals.md, "Retention").
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

import structlog

from trine_core import ConfigError, RunExpired, RunNotFound, TrineError
from trine_engine.clock import Clock
from trine_engine.idem import split_idem_row
from trine_engine.storage import Store
from trine_engine.storage.keys import (
    ACTIVE,
    ATTEMPTS,
    ENDED_BACKFILL_KEY,
    ENDED_PREFIX,
    EVENTS,
    FORGET_PREFIX,
    IDEM,
    JOURNAL,
    LOG,
    META,
    RUNS,
    SIGNALS,
    applied_key,
    decode_log_key,
    decode_u64,
    encode_u64,
    ended_key,
    expired_key,
    forget_key,
    log_key,
    log_mark_key,
    log_mark_prefix,
    log_start_key,
    partition_prefix,
    prefix_end,
    run_prefix,
    split_timed_key,
    swept_key,
)
from trine_proto.codec import decode
from trine_proto.trine.v1 import Run
from trine_proto.vocabulary import is_final

if TYPE_CHECKING:
    from trine_engine.run_state import RunCache

DEFAULT_RETENTION = "7d"
BATCH_RUNS = 1_000
"""Runs deleted by one synced write (≈ 4 range deletes and 5 point writes each)."""
SCAN_LIMIT = 10_000
"""Index rows one sweep reads at most (rows of runs kept for a parent still running count)."""
SWEEP_INTERVAL_MAX_MS = 60_000
SWEEP_INTERVAL_MIN_MS = 100

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")


def parse_retention(text: str, origin: str = "retention") -> int:
    """``90s``, ``12h``, ``7d``, ``500ms`` → milliseconds; ``0`` or ``off`` → 0 (keep forever).
    A ConfigError naming ``origin`` otherwise."""
    value = str(text).strip().lower()
    if value in ("0", "off", "never"):
        return 0
    match = _DURATION.fullmatch(value)
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{origin}: expected a duration such as 90s, 12h or 7d (units ms, s, m, h, d), "
            f"or 0/off to keep finished runs forever; got {text!r}"
        )
    return int(match[1]) * _UNITS[match[2]]


def describe(ms: int) -> str:
    """``172800000`` → ``2d``: a retention as its setting spells it."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS[unit] == 0:
            return f"{ms // _UNITS[unit]}{unit}"
    return f"{ms}ms"


def missing(store: Store, run_id: str) -> TrineError:
    """The error for a run id with no run: ``run_expired`` when retention deleted it (its
    tombstone is still there), ``run_not_found`` otherwise. One point read, on a miss only."""
    raw = store.get(META, expired_key(run_id)) if run_id else None
    if raw is None or len(raw) != 16:
        return RunNotFound(f"no run {run_id!r}", run_id=run_id)
    ended_at, retention = decode_u64(raw[:8]), decode_u64(raw[8:])
    return RunExpired(
        f"run {run_id!r} was deleted by retention: finished runs are kept {describe(retention)} "
        f"after they end (--retention)",
        run_id=run_id,
        ended_at_ms=ended_at,
        retention=describe(retention),
    )


class Retention:
    """The sweeper of one partition: :meth:`sweep` deletes, :meth:`start` runs it periodically."""

    def __init__(
        self,
        store: Store,
        cache: RunCache,
        clock: Clock,
        retention_ms: int,
        log: structlog.stdlib.BoundLogger,
        partition: int = 0,
    ) -> None:
        self._store = store
        self._cache = cache
        self._clock = clock
        self.retention_ms = retention_ms
        self._log = log
        self.partition = partition
        self.interval_ms = max(SWEEP_INTERVAL_MIN_MS, min(SWEEP_INTERVAL_MAX_MS, retention_ms // 4))
        self._task: asyncio.Task[None] | None = None
        self._backfilled = False
        self.runs_deleted = 0
        self.sweeps = 0

    # -- the task --------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="trine-engine-retention")

    def cancel(self) -> None:
        """Stop sweeping, without awaiting: no sweep writes after this returns (a sweep never
        awaits, so the task next resumes at its sleep, cancelled)."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        """Sweep every :attr:`interval_ms` of real time (not the engine's clock: a test clock
        that skips to the next due timer must not skip to a sweep), at once again after a full
        batch. The cutoff is the engine's clock."""
        delay_s = self.interval_ms / 1000
        while True:
            await asyncio.sleep(delay_s)
            try:
                full = self.sweep(self._clock.now_ms()) >= BATCH_RUNS
            except TrineError as exc:  # a failed write or read: logged, tried again later
                self._log.error("retention sweep failed", error=exc.message)
                full = False
            except Exception:
                self._log.exception("retention sweep failed")
                full = False
            delay_s = 0 if full else self.interval_ms / 1000

    # -- one sweep -------------------------------------------------------------------------------

    def sweep(self, now_ms: int) -> int:
        """Delete the runs that ended more than the retention before ``now_ms`` (at most
        :data:`BATCH_RUNS`), forget old tombstones and trim the log: one synced write. Returns
        how many runs it deleted. Synchronous: nothing else runs on the loop meanwhile."""
        begun = time.perf_counter()
        store, batch = self._store, self._store.new_batch()
        cutoff = now_ms - self.retention_ms
        backfilled = self._backfill(batch)
        deleted: list[str] = []
        newest = -1
        scanned = 0
        for key, _ in store.scan(META, prefix=ENDED_PREFIX):
            ended_at, run_id = split_timed_key(ENDED_PREFIX, key)
            scanned += 1
            if ended_at > cutoff or scanned > SCAN_LIMIT or len(deleted) >= BATCH_RUNS:
                break
            run = self._expirable(run_id, ended_at)
            if run is not None and run.parent_run_id in self._cache.active:
                continue  # kept while its parent is not final: its index row stays
            if run is not None:
                self._delete_run(batch, run, ended_at, now_ms)
                deleted.append(run_id)
                newest = max(newest, ended_at)
            store.delete(batch, META, key)
        forgotten = self._forget(batch, now_ms)
        marked, trimmed = self._trim_log(batch, now_ms, cutoff)
        if not deleted and not forgotten and not marked and trimmed is None and not backfilled:
            return 0
        if newest >= 0:
            store.put(batch, META, swept_key(self.partition), encode_u64(newest))
        store.write(batch)
        for run_id in deleted:
            self._cache.forget(run_id)
        self.runs_deleted += len(deleted)
        self.sweeps += 1
        self._log.debug(
            "retention sweep",
            runs_deleted=len(deleted),
            tombstones_forgotten=forgotten,
            log_trimmed_to=trimmed,
            took_ms=round((time.perf_counter() - begun) * 1000, 2),
        )
        return len(deleted)

    def _backfill(self, batch: object) -> bool:
        """Write the ``ended/`` rows of runs that finished before retention existed (a database
        of an earlier trine), :data:`SCAN_LIMIT` runs a sweep, resuming where the last left off;
        True if it wrote anything. Once done, a flag read once per process."""
        if self._backfilled:
            return False
        store = self._store
        raw = store.get(META, ENDED_BACKFILL_KEY)
        if raw == b"done":
            self._backfilled = True
            return False
        start = raw + b"\0" if raw else b""  # just after the last run written
        last, scanned = b"", 0
        for key, value in store.scan(RUNS, start=start):
            run = decode(Run, value)
            if is_final(run.status):
                store.put(batch, META, ended_key(run.updated_at_ms, run.id), b"")
            last, scanned = key, scanned + 1
            if scanned >= SCAN_LIMIT:
                break
        store.put(batch, META, ENDED_BACKFILL_KEY, last if scanned >= SCAN_LIMIT else b"done")
        return True

    def _expirable(self, run_id: str, ended_at: int) -> Run | None:
        """The finished run an index row names; None when the row is stale (drop it)."""
        if run_id in self._cache.active:
            return None  # retried: active again, its next end writes a new row
        raw = self._store.get(RUNS, run_id.encode())
        if raw is None:
            return None
        run = decode(Run, raw)
        if not is_final(run.status) or run.updated_at_ms != ended_at:
            return None  # retried and ended again later: that end has its own row
        return run

    def _delete_run(self, batch: object, run: Run, ended_at: int, now_ms: int) -> None:
        store, run_id = self._store, run.id
        key = run_id.encode()
        store.delete(batch, RUNS, key)
        store.delete(batch, ACTIVE, key)
        prefix = run_prefix(run_id)
        for family in (JOURNAL, EVENTS, ATTEMPTS, SIGNALS):
            store.delete_range(batch, family, prefix, prefix_end(prefix))
        if run.idempotency_key:
            idem = run.idempotency_key.encode()
            row = store.get(IDEM, idem)
            # the key names this run, not a later one (the row also holds a request digest)
            if row is not None and split_idem_row(row)[0] == run_id:
                store.delete(batch, IDEM, idem)
        store.put(
            batch, META, expired_key(run_id), encode_u64(ended_at) + encode_u64(self.retention_ms)
        )
        store.put(batch, META, forget_key(now_ms + self.retention_ms, run_id), b"")

    def _forget(self, batch: object, now_ms: int) -> int:
        """Delete the tombstones whose time is up (at most :data:`BATCH_RUNS`)."""
        forgotten = 0
        for key, _ in self._store.scan(META, prefix=FORGET_PREFIX):
            at, run_id = split_timed_key(FORGET_PREFIX, key)
            if at > now_ms or forgotten >= BATCH_RUNS:
                break
            self._store.delete(batch, META, expired_key(run_id))
            self._store.delete(batch, META, key)
            forgotten += 1
        return forgotten

    def _trim_log(self, batch: object, now_ms: int, cutoff: int) -> tuple[bool, int | None]:
        """Mark the applied offset now and then; range-delete the segments before the newest
        mark older than ``cutoff``. Returns whether it marked, and the offset the log now
        starts at if it moved."""
        store, partition = self._store, self.partition
        prefix = log_mark_prefix(partition)
        marks = [
            (decode_u64(k[len(prefix) :]), decode_u64(v))
            for k, v in store.scan(META, prefix=prefix)
        ]
        raw = store.get(META, applied_key(partition))
        if raw is None:
            return False, None
        marked = not marks or now_ms - marks[-1][0] >= max(self.interval_ms, self.retention_ms // 8)
        if marked:
            store.put(batch, META, log_mark_key(partition, now_ms), encode_u64(decode_u64(raw) + 1))
        old = [(at, offset) for at, offset in marks if at <= cutoff]
        if not old:
            return marked, None
        for at, _ in old[:-1]:
            store.delete(batch, META, log_mark_key(partition, at))
        upto = old[-1][1]
        found = store.last_before(LOG, log_key(partition, upto))
        if found is None or not found[0].startswith(partition_prefix(partition)):
            return marked, None
        first = decode_log_key(found[0])[1]  # the segment holding the mark: it stays
        raw_start = store.get(META, log_start_key(partition))
        start = 0 if raw_start is None else decode_u64(raw_start)
        if first <= start:
            return marked or len(old) > 1, None
        store.delete_range(batch, LOG, log_key(partition, start), log_key(partition, first))
        store.put(batch, META, log_start_key(partition), encode_u64(first))
        return True, first
