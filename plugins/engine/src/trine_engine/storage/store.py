"""The engine's RocksDB database: opening it safely, its column families, raw reads and writes.

The data dir *is* the database. Opening refuses, with one clear line each, what would otherwise
corrupt data or fail obscurely later: a directory holding something else, a RocksDB database that
is not trine's, a trine database of a storage format it does not know (before writing anything to
it), and a database another engine process has open. A database of an older format it knows is
upgraded (``upgrade``). Everything above this module speaks in column-family names and bytes.

Damage is refused, never read around (docs/internals.md, "Damaged storage"). RocksDB replays its
write-ahead log in ``tolerate_corrupted_tail_records`` mode: a record that fails its checksum in
the middle of the WAL makes the open fail (measured with rocksdict 0.3.29: its default,
``point_in_time``, silently stops the replay there and opens a rolled-back database), while an
incomplete record at the very end, a write torn by a crash, is dropped. A WAL cut short looks
like a torn tail to RocksDB: the acknowledged marker (``marker``) tells the two apart. Both are
checked by a read-only open before the read-write one, which would otherwise flush the recovered
state and delete the damaged WAL. A read that meets damage (a block that fails its checksum, an
iterator that stops on an error) raises StorageError with a generic message (the RocksDB error,
which names files, goes to the log only): a listing is never cut short silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from rocksdict import AccessType, DBRecoveryMode, Options, Rdict, WriteBatch, WriteOptions

from trine_core import StorageError, get_logger
from trine_engine.storage import upgrade
from trine_engine.storage.keys import (
    APPLIED_PREFIX,
    FAMILIES,
    FORMAT_KEY,
    FORMAT_VERSION,
    LOG,
    META,
    decode_u64,
)
from trine_engine.storage.marker import marker_path, read_marker

UPGRADES = {b"1": upgrade.from_format_1}
"""How to bring a database of an older format to the current one, by its format."""


MAX_TOTAL_WAL_BYTES = 64 << 20
"""RocksDB flushes the column families that hold the oldest WAL file once the WAL files add up
to this. Without it a family written rarely (``functions``) keeps every WAL file since its last
write alive (RocksDB's default bound is 4x the sum of the write buffers, gigabytes here): with
retention deleting rows, disk use under steady load then only stays flat with it."""

READ_FAILED = "the engine's storage could not be read: its data is damaged (see the engine's log)"
"""The message of a read that met damage: generic, the details (file names) go to the log."""

log = get_logger("engine")


def _options(create: bool = True) -> Any:
    # A database created in raw mode must always be reopened in raw mode (rocksdict stores values
    # pickled otherwise), and so must each column family.
    options = Options(raw_mode=True)
    options.create_if_missing(create)
    options.create_missing_column_families(create)
    options.set_wal_recovery_mode(DBRecoveryMode.tolerate_corrupted_tail_records())
    options.set_paranoid_checks(True)
    options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES)
    return options


class Store:
    """An open database. Holds the only references to rocksdict handles, so ``close`` can drop
    them all: rocksdict keeps the lock while any column-family handle is alive, and a reopen in
    the same process would then fail."""

    def __init__(self, path: Path, db: Any) -> None:
        self.path = path
        self._db: Any = db
        self._handles: dict[str, Any] = {n: db.get_column_family_handle(n) for n in FAMILIES}
        self._families: dict[str, Any] = {n: db.get_column_family(n) for n in FAMILIES}
        self._sync = WriteOptions()
        self._sync.sync = True  # WriteOptions.set_sync() does not exist in rocksdict
        self._unsynced = WriteOptions()
        self._unsynced.sync = False
        self.upgraded_from: str | None = None
        """The storage format this open upgraded the database from, if any."""
        self.damage: str | None = None
        """What the last read that met damage failed on (RocksDB's words: they name files)."""

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open or create the database at ``path``; raise StorageError naming the problem."""
        path = Path(path)
        families = _inspect(path)
        found = None if families is None else _probe(path, families)
        if found is not None and found != FORMAT_VERSION and found not in UPGRADES:
            raise StorageError(
                f"data dir {path} has storage format {found.decode(errors='replace')}; this "
                f"trine reads format {FORMAT_VERSION.decode()} (and upgrades format "
                f"{', '.join(v.decode() for v in UPGRADES)})"
            )
        try:
            db = Rdict(
                str(path),
                _options(),
                column_families={name: Options(raw_mode=True) for name in FAMILIES},
            )
        except Exception as exc:  # rocksdict raises bare Exception for every RocksDB status
            if "lock" in str(exc).lower():
                raise StorageError(
                    f"data dir {path} is in use by another trine engine (its RocksDB lock is "
                    f"held); stop that process or choose another --data-dir"
                ) from None
            _refuse_damage(path, exc)
            raise StorageError(f"cannot open data dir {path}: {exc}") from exc
        store = cls(path, db)
        try:
            store._settle_format(families is not None, found)
        except BaseException:
            store.close()
            raise
        return store

    def _settle_format(self, existing: bool, found: bytes | None) -> None:
        if found is None:
            # A database trine created but crashed before recording its format has nothing in it:
            # adopt it. Anything else without a format is not ours.
            if existing and not self.is_empty(LOG):
                raise StorageError(
                    f"data dir {self.path} holds a RocksDB database without a trine storage "
                    f"format; it was not written by trine"
                )
            batch = self.new_batch()
            self.put(batch, META, FORMAT_KEY, FORMAT_VERSION)
            self.write(batch)
        elif found != FORMAT_VERSION:
            UPGRADES[found](self)
            self.upgraded_from = found.decode()

    # -- writing ---------------------------------------------------------------------------------

    def new_batch(self) -> Any:
        return WriteBatch(raw_mode=True)

    def put(self, batch: Any, family: str, key: bytes, value: bytes) -> None:
        batch.put(key, value, self._handles[family])

    def delete(self, batch: Any, family: str, key: bytes) -> None:
        batch.delete(key, self._handles[family])

    def delete_range(self, batch: Any, family: str, begin: bytes, end: bytes) -> None:
        """Delete every row of ``family`` in ``[begin, end)``: one range tombstone, whatever the
        number of rows (retention deletes a run's journal and events, and the log, so)."""
        batch.delete_range(begin, end, self._handles[family])

    def write(self, batch: Any, sync: bool = True) -> None:
        """Write ``batch`` atomically. ``sync``: fsync the WAL before returning, holding the GIL
        throughout (rocksdict does not release it around ``Rdict.write``: measured, see
        ``partition_log``). Without it, RocksDB appends the batch to the WAL file with one
        ``write(2)`` (``manual_wal_flush`` is off, rocksdict does not expose it) and inserts it
        into the memtable: it survives the death of the process at once (the page cache holds
        it), an operating-system crash or a power loss only after :meth:`sync_wal`."""
        self._db.write(batch, self._sync if sync else self._unsynced)

    def sync_wal(self) -> None:
        """Make every write so far durable: RocksDB's ``SyncWAL`` fsyncs each WAL file not yet
        synced (the live one, and any older one a memtable switch closed meanwhile), then the
        WAL directory if a new WAL file was created since its last sync. rocksdict releases the
        GIL around it (``Rdict.flush_wal``, ``py.allow_threads``), and RocksDB allows it from
        another thread while writes go on: the partition log calls it from its sync thread."""
        self._db.flush_wal(True)

    # -- reading ---------------------------------------------------------------------------------

    def get(self, family: str, key: bytes) -> bytes | None:
        try:
            value = self._families[family].get(key)
        except Exception as exc:  # a RocksDB status: a block failing its checksum, an I/O error
            self._read_failed(family, exc)
        return None if value is None else bytes(value)

    def _read_failed(self, family: str, exc: Exception) -> NoReturn:
        """Raise the generic StorageError of a read that met damage; log what RocksDB said."""
        if self._db is None:
            raise StorageError("the engine's storage is closed") from None
        self.damage = f"reading its {family!r} rows failed: {exc}"
        log.error("storage read failed", family=family, error=str(exc))
        raise StorageError(READ_FAILED, family=family) from None

    def _check(self, it: Any, family: str) -> None:
        """Raise if iterator ``it`` stopped on an error rather than at the end of its rows:
        RocksDB's iterators end (``valid()`` false) on an error as they do at the end."""
        try:
            it.status()
        except Exception as exc:
            self._read_failed(family, exc)

    def is_empty(self, family: str) -> bool:
        return next(self.scan(family), None) is None

    def scan(
        self, family: str, start: bytes = b"", prefix: bytes = b""
    ) -> Iterator[tuple[bytes, bytes]]:
        """Rows of ``family`` from ``start`` on (keys starting with ``prefix`` only), in key
        order. The iterator handle is dropped when the generator ends or is closed."""
        it = self._families[family].iter()
        try:
            it.seek(max(start, prefix))
            while it.valid():
                key = bytes(it.key())
                if not key.startswith(prefix):
                    return
                yield key, bytes(it.value())
                it.next()
            self._check(it, family)
        finally:
            del it

    def scan_back(self, family: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Rows of ``family`` with keys ``<= start`` (every row when ``start`` is empty), in
        reverse key order. The iterator handle is dropped when the generator ends or is closed."""
        it = self._families[family].iter()
        try:
            if start:
                it.seek_for_prev(start)
            else:
                it.seek_to_last()
            while it.valid():
                yield bytes(it.key()), bytes(it.value())
                it.prev()
            self._check(it, family)
        finally:
            del it

    def last_before(self, family: str, key: bytes) -> tuple[bytes, bytes] | None:
        """The row with the greatest key ``<= key``, if any."""
        it = self._families[family].iter()
        try:
            it.seek_for_prev(key)
            if it.valid():
                return bytes(it.key()), bytes(it.value())
            self._check(it, family)
            return None
        finally:
            del it

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and release the database and its lock; safe to call twice."""
        if self._db is None:
            return
        # Drop every column-family object first: each keeps the database (and its lock) alive.
        self._handles.clear()
        self._families.clear()
        db, self._db = self._db, None
        try:
            db.close()
        except Exception as exc:  # a full disk: the flush at close fails, the WAL has it all
            log.error("closing the database failed", data_dir=str(self.path), error=str(exc))
        del db


def _inspect(path: Path) -> list[str] | None:
    """The column families of the database at ``path`` (None: there is none yet); refuse what is
    neither empty nor trine's."""
    if path.exists() and not path.is_dir():
        raise StorageError(f"data dir {path} is not a directory")
    if not path.exists() or not any(path.iterdir()):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data dir {path}: {exc.strerror}") from None
        return None
    if not (path / "CURRENT").is_file():
        raise StorageError(
            f"data dir {path} is not empty and holds no trine database; point --data-dir at "
            f"an empty or trine-owned directory"
        )
    try:
        families = Rdict.list_cf(str(path), Options(raw_mode=True))
    except Exception as exc:
        raise StorageError(f"data dir {path} holds no readable RocksDB database: {exc}") from None
    if META not in families:
        raise StorageError(
            f"data dir {path} holds a RocksDB database that was not written by trine "
            f"(no {META!r} column family)"
        )
    return list(families)


def _probe(path: Path, families: list[str]) -> bytes | None:
    """The storage format recorded in the database, read without writing anything (a read-only
    open takes no lock, creates no column family, and leaves the WAL as it is). Refuses a WAL
    damaged mid-file (RocksDB's replay fails) and one cut short behind the acknowledged marker
    (the replay ends before it)."""
    try:
        db = Rdict(
            str(path),
            _options(create=False),
            column_families={name: Options(raw_mode=True) for name in families},
            access_type=AccessType.read_only(),
        )
    except Exception as exc:
        _refuse_damage(path, exc)
        raise StorageError(f"cannot open data dir {path}: {exc}") from exc
    try:
        meta: Any = db.get_column_family(META)
        value = meta.get(FORMAT_KEY)
        applied: dict[int, int] = {}
        for key, raw in meta.items(from_key=APPLIED_PREFIX):
            if not bytes(key).startswith(APPLIED_PREFIX):
                break
            applied[int(bytes(key)[len(APPLIED_PREFIX) :])] = decode_u64(bytes(raw))
        del meta  # a column family keeps the database open
    except Exception as exc:
        raise StorageError(
            f"data dir {path} is damaged: its meta rows cannot be read: {exc}"
        ) from None
    finally:
        db.close()
    for partition in sorted({0, *applied}):  # partition 0 is written from the first commit
        check_marker(path, partition, applied.get(partition))
    return None if value is None else bytes(value)


def check_marker(path: Path, partition: int, applied: int | None) -> None:
    """Refuse a database whose log for ``partition`` ends (last applied offset ``applied``)
    before what its acknowledged marker says was acknowledged."""
    acked = read_marker(path, partition)
    held = -1 if applied is None else applied
    if acked is not None and acked > held + 1:
        cause = f"its RocksDB write-ahead log ({wal_files(path)}) was damaged or cut short"
        raise StorageError(
            f"data dir {path} is damaged: partition {partition}'s log ends at offset {held} "
            f"but offsets up to {acked - 1} were acknowledged "
            f"({marker_path(path, partition).name}); {cause}: acknowledged writes are lost, "
            f"refusing to open it (trine check --data-dir {path})"
        )


def wal_files(path: Path) -> str:
    """The write-ahead log files RocksDB replays at open: ``000004.log`` (or ``000004.log,
    000009.log``); RocksDB's error does not say which one failed."""
    names = sorted(p.name for p in path.glob("*.log"))
    return ", ".join(names) if names else "none left"


def _refuse_damage(path: Path, exc: Exception) -> None:
    """Raise the one-line StorageError of an open that RocksDB refused as corrupt."""
    what = damage(path, exc)
    if what is None:
        return
    raise StorageError(
        f"data dir {path} is damaged: {what}; refusing to open it (trine check --data-dir {path})"
    ) from None


def damage(path: Path, exc: Exception) -> str | None:
    """What an open that RocksDB refused as corrupt says is damaged (None: not corruption). Its
    replay of the WAL names no file; a damaged table or MANIFEST is named in the message."""
    message = str(exc)
    if "Corruption" not in message:
        return None
    if any(name in message for name in (".sst", "MANIFEST", "CURRENT", "OPTIONS")):
        return f"RocksDB refuses to open it: {message}"
    return (
        f"RocksDB refuses its write-ahead log ({wal_files(path)}): {message}; the records behind "
        f"the damage cannot be recovered"
    )
