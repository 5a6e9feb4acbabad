"""``trine check --data-dir D``: verify an engine's data dir offline and say what is damaged.

Registered through the ``trine.commands`` entry point ``check = "trine_engine.check"``: core loads
this module alone. It takes the database's lock for as long as it runs (so an engine cannot start
under it, and it refuses while one runs), opens the database read-only (nothing is written, the
WAL is left as it is), and checks, in order:

1. RocksDB's replay of its write-ahead log: a WAL damaged mid-file is reported (and the rest is
   checked on what RocksDB can recover before the damage);
2. the acknowledged marker (``storage/marker.py``) against the log: a log that ends before it lost
   acknowledged writes;
3. every row of every column family, read with RocksDB's block checksums verified, so a damaged
   SST block or an iterator that stops on an error is reported with its family;
4. every log record's own CRC32 and decoding, the segments' offsets (contiguous, from 0), and the
   log's end against the applied offset;
5. the derived state against the log where it can: every run row was created by a log record and
   every ``RunStarted`` has its row; ``active`` rows and non-final runs match; a run's journal and
   events are numbered without gaps; no journal, event, attempt or signal row without its run.

Prints one line per problem and a summary; exits 0 when sound, 1 when damaged, 2 when it cannot
check (usage, no trine database, the database in use).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rocksdict import AccessType, DBRecoveryMode, Options, Rdict, ReadOptions

from trine_core import CommandRegistry, StorageError, hookimpl
from trine_engine.storage import framing
from trine_engine.storage.keys import (
    ACTIVE,
    APPLIED_PREFIX,
    ATTEMPTS,
    EVENTS,
    FORMAT_KEY,
    FORMAT_VERSION,
    JOURNAL,
    LOG,
    LOG_START_PREFIX,
    META,
    RUNS,
    SIGNALS,
    SWEPT_PREFIX,
    decode_log_key,
    decode_u64,
    row_number,
)
from trine_engine.storage.marker import marker_path, read_marker
from trine_engine.storage.store import damage
from trine_engine.ulid import timestamp_ms
from trine_proto.codec import decode
from trine_proto.trine.engine.v1 import LogRecord
from trine_proto.trine.v1 import Run
from trine_proto.vocabulary import is_final

RUN_ID_LENGTH = 26
MAX_REPORTED = 20
"""Problems of one kind printed at most (the count says how many there were)."""

CLEAN, DAMAGED, USAGE = 0, 1, 2


class CannotCheck(Exception):
    """The check could not run at all (exit 2)."""


class Unreadable(Exception):
    """The database is too damaged to open even read-only (reported; exit 1)."""


@dataclass
class Report:
    out: TextIO
    problems: int = 0
    shown: dict[str, int] = field(default_factory=dict)

    def damaged(self, kind: str, message: str) -> None:
        self.problems += 1
        shown = self.shown.get(kind, 0)
        self.shown[kind] = shown + 1
        if shown < MAX_REPORTED:
            print(f"damaged: {message}", file=self.out)
        elif shown == MAX_REPORTED:
            print(f"damaged: … more {kind} problems not shown", file=self.out)


def main(prog: str, argv: Sequence[str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Verify an engine's data dir offline (no engine may have it open): RocksDB's "
        "WAL and block checksums, every log record's CRC, the acknowledged marker, and the "
        "runs and journals against the log. Exits 0 when sound, 1 when damaged, 2 when it "
        "cannot check.",
    )
    parser.add_argument("--data-dir", required=True, type=Path, help="the engine's data dir")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return USAGE if exc.code else CLEAN
    try:
        return check(args.data_dir, out)
    except CannotCheck as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE


def check(data_dir: Path, out: TextIO) -> int:
    """Check ``data_dir``, print what is damaged; the exit code."""
    path = Path(data_dir)
    if not (path / "CURRENT").is_file():
        raise CannotCheck(f"{path} holds no trine database")
    report = Report(out)
    with _locked(path):
        families = _families(path)
        try:
            db = _open(path, families, report)
        except Unreadable:
            db = None
        if db is not None:
            try:
                _check_database(path, db, families, report)
            finally:
                db.close()
    if report.problems:
        print(f"trine check: {path}: DAMAGED, {report.problems} problem(s)", file=out)
        return DAMAGED
    print(f"trine check: {path}: sound", file=out)
    return CLEAN


class _locked:
    """Hold RocksDB's own lock file (``LOCK``, an fcntl lock) while checking: refuse when an
    engine holds it, and keep one from starting meanwhile."""

    def __init__(self, path: Path) -> None:
        self._path = path / "LOCK"
        self._fd = -1

    def __enter__(self) -> None:
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise CannotCheck(
                    f"{self._path.parent} is in use by a running trine engine (its RocksDB lock "
                    f"is held); stop it first: the check reads the data dir offline"
                ) from None
            raise CannotCheck(f"cannot lock {self._path}: {exc.strerror}") from None

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the lock


def _families(path: Path) -> list[str]:
    try:
        families = list(Rdict.list_cf(str(path), Options(raw_mode=True)))
    except Exception as exc:
        raise CannotCheck(f"{path} holds no readable RocksDB database: {exc}") from None
    if META not in families:
        raise CannotCheck(f"{path} holds a RocksDB database that trine did not write")
    return families


def _open(path: Path, families: list[str], report: Report) -> Any:
    """Read-only, as the engine replays the WAL; on a WAL damaged mid-file, report it and go on
    with what RocksDB recovers before the damage."""
    for mode in (DBRecoveryMode.tolerate_corrupted_tail_records, DBRecoveryMode.point_in_time):
        options = Options(raw_mode=True)
        options.set_wal_recovery_mode(mode())
        options.set_paranoid_checks(True)
        try:
            return Rdict(
                str(path),
                options,
                column_families={name: Options(raw_mode=True) for name in families},
                access_type=AccessType.read_only(),
            )
        except Exception as exc:
            what = damage(path, exc)
            if what is None:
                raise CannotCheck(f"cannot open {path}: {exc}") from None
            if mode is DBRecoveryMode.point_in_time or "write-ahead log" not in what:
                report.damaged("open", what)
                raise Unreadable from None
            report.damaged("wal", f"{what} (the rest is checked as recovered up to it)")
    raise AssertionError("unreachable")


def _rows(db: Any, family: str, report: Report) -> Iterator[tuple[bytes, bytes]]:
    """Every row of ``family``, block checksums verified; an iterator error is reported."""
    handle = db.get_column_family(family)
    options = ReadOptions()
    options.set_verify_checksums(True)
    it = handle.iter(options)
    try:
        it.seek_to_first()
        while it.valid():
            yield bytes(it.key()), bytes(it.value())
            it.next()
        try:
            it.status()
        except Exception as exc:
            report.damaged("sst", f"column family {family!r} cannot be read to its end: {exc}")
    finally:
        del it, handle


_STATE_FAMILIES = (META, LOG, RUNS, ACTIVE, JOURNAL, EVENTS, ATTEMPTS, SIGNALS)
"""The families the checks read row by row; the others (``idem``, ``functions``) are read for
their checksums only."""


def _check_database(path: Path, db: Any, families: list[str], report: Report) -> None:
    meta = dict(_rows(db, META, report))
    found = meta.get(FORMAT_KEY)
    if found is not None and found != FORMAT_VERSION:
        raise CannotCheck(
            f"{path} has storage format {found.decode(errors='replace')}; this trine checks "
            f"format {FORMAT_VERSION.decode()} (an engine upgrades format 1 when it opens it)"
        )
    applied = {
        int(key[len(APPLIED_PREFIX) :]): decode_u64(value)
        for key, value in meta.items()
        if key.startswith(APPLIED_PREFIX)
    }
    starts = {  # where retention trimmed each partition's log to
        int(key[len(LOG_START_PREFIX) :]): decode_u64(value)
        for key, value in meta.items()
        if key.startswith(LOG_START_PREFIX)
    }
    created = _check_log(path, db, applied, report, starts)
    swept = max((decode_u64(v) for k, v in meta.items() if k.startswith(SWEPT_PREFIX)), default=-1)
    _check_state(db, created, report, trimmed=any(starts.values()), swept_ms=swept)
    for family in families:
        if family not in _STATE_FAMILIES:
            for _ in _rows(db, family, report):  # every block read, its checksum verified
                pass


def _check_log(
    path: Path, db: Any, applied: dict[int, int], report: Report, starts: dict[int, int]
) -> Created:
    """Every record's CRC and decoding, offsets contiguous from 0 (or from where retention
    trimmed the log) and ending at the applied offset, the marker not ahead: the run ids the
    log created."""
    created = Created()
    ends: dict[int, int] = {}
    for key, segment in _rows(db, LOG, report):
        try:
            partition, first = decode_log_key(key)
        except Exception:
            report.damaged("log", f"a log key of {len(key)} bytes is not a segment key")
            continue
        expected = ends.get(partition, starts.get(partition, 0) - 1) + 1
        if first != expected:
            report.damaged(
                "log", f"partition {partition}: offsets {expected}..{first - 1} are missing"
            )
        offset = first - 1
        try:
            for offset, raw in framing.unframe(segment, partition, first):
                try:
                    record = decode(LogRecord, raw)
                except Exception as exc:
                    report.damaged(
                        "log",
                        f"log record at partition {partition} offset {offset} cannot "
                        f"be decoded: {exc}",
                    )
                    continue
                created.add(record)
        except StorageError as exc:
            report.damaged("log", exc.message)
        ends[partition] = offset
    for partition in sorted({0, *applied, *ends}):
        end = ends.get(partition, -1)
        held = applied.get(partition, -1)
        if end != held:
            report.damaged(
                "log",
                f"partition {partition}: the log ends at offset {end} but the state was "
                f"applied up to offset {held}",
            )
        try:
            acked = read_marker(path, partition)
        except StorageError as exc:
            report.damaged("marker", exc.message)
            continue
        if acked is not None and acked > held + 1:
            report.damaged(
                "marker",
                f"partition {partition}: offsets up to {acked - 1} were acknowledged "
                f"({marker_path(path, partition).name}) but the log ends at offset {held}: "
                f"acknowledged writes are lost",
            )
    return created


class Created:
    """The run ids the log's records create: ``RunStarted`` runs and the children a report
    started (only those need a row: a child of an unknown function gets an id and no run)."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.children: set[str] = set()

    def add(self, record: LogRecord) -> None:
        if record.run_started is not None and record.run_started.run is not None:
            self.started.add(record.run_started.run.id)
        elif record.run_commands is not None:
            for command in record.run_commands.commands:
                child = command.start_child
                if child is not None and child.run_id:
                    self.children.add(child.run_id)


def _check_state(
    db: Any, created: Created, report: Report, trimmed: bool = False, swept_ms: int = -1
) -> None:
    """``trimmed``: retention trimmed the log, so a run may have a row and no record left;
    ``swept_ms``: retention deleted runs that ended up to then, so a run created by then may
    have its record and no row."""
    runs: dict[str, bool] = {}  # run id → final
    for key, value in _rows(db, RUNS, report):
        run_id = key.decode(errors="replace")
        try:
            run = decode(Run, value)
        except Exception as exc:
            report.damaged("runs", f"run {run_id}: its row cannot be decoded: {exc}")
            continue
        runs[run_id] = is_final(run.status)
        if not trimmed and run_id not in created.started and run_id not in created.children:
            report.damaged("runs", f"run {run_id} has a row but no log record created it")
    for run_id in sorted(created.started - runs.keys()):
        if _created_ms(run_id) <= swept_ms:
            continue  # retention deleted it
        report.damaged("runs", f"run {run_id} was started in the log but has no row")
    active = {key.decode(errors="replace") for key, _ in _rows(db, ACTIVE, report)}
    for run_id in sorted(active - runs.keys()):
        report.damaged("runs", f"run {run_id} is in 'active' but has no row")
    for run_id, final in sorted(runs.items()):
        if final and run_id in active:
            report.damaged("runs", f"run {run_id} is final but still in 'active'")
        elif not final and run_id not in active:
            report.damaged("runs", f"run {run_id} is not final but missing from 'active'")
    for family, first in ((JOURNAL, 0), (EVENTS, 1), (ATTEMPTS, None), (SIGNALS, None)):
        numbers: dict[str, list[int]] = {}
        for key, _ in _rows(db, family, report):
            run_id = key[:RUN_ID_LENGTH].decode(errors="replace")
            numbers.setdefault(run_id, []).append(row_number(key))
        for run_id, found in sorted(numbers.items()):
            if run_id not in runs:
                report.damaged(family, f"{family} rows of run {run_id}, which has no row")
            elif first is not None and found != list(range(first, first + len(found))):
                report.damaged(family, f"run {run_id}: its {family} rows have gaps")


def _created_ms(run_id: str) -> int:
    """When a run id (a ULID) was made; -1 if it is not one."""
    try:
        return timestamp_ms(run_id)
    except ValueError:
        return -1


@hookimpl
def trine_register_commands(registry: CommandRegistry) -> None:
    registry.add_command("check", main)
