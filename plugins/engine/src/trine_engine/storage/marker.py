"""The acknowledged marker: how far a partition's log was acknowledged, kept outside RocksDB.

RocksDB recovers its write-ahead log on open, and a WAL damaged or cut short loses every write
after the damage with it: the applied offset, the log and the derived state roll back together and
agree with each other, so nothing inside the database can tell that acknowledged writes are gone.
The marker is a small file beside the database, ``trine-acked-<partition>``, holding the offset
after the last record whose batch was acknowledged. The engine refuses to open a database whose
log ends before it (``Store.open``), and ``trine check`` reports it.

What it costs and guarantees (docs/internals.md, "Damaged storage"):

- every group commit, after its synced RocksDB write and before any caller is answered, writes the
  16 bytes in place (one ``pwrite``, no fsync): they are in the kernel's page cache before the
  acknowledgement, so they survive the death of the process (``kill -9``, a crash) whatever
  happens to the WAL later;
- the file is synced (``fdatasync``) at most once per :data:`SYNC_INTERVAL_S` by the commit that
  finds the last sync older than that, and at close: after an operating-system crash or a power
  loss it may be up to that long behind, so a rollback of only the last second of acknowledged
  writes can then go unseen (RocksDB's own checks still refuse a WAL damaged mid-file);
- it is never ahead of the log: it is written only after the batch it names is durable.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

from trine_core import StorageError

_MAGIC = b"TRA1"
_BODY = struct.Struct(">4sQ")  # magic, the next offset after the last acknowledged record
_SIZE = _BODY.size + 4  # + CRC32 of the body: 16 bytes, within one disk sector

SYNC_INTERVAL_S = 1.0
"""How often, at most, a commit syncs the marker (the window an OS crash may take back)."""


def marker_path(data_dir: Path, partition: int) -> Path:
    return Path(data_dir) / f"trine-acked-{partition}"


def read_marker(data_dir: Path, partition: int) -> int | None:
    """The next offset after the last acknowledged record of ``partition`` (None: no marker);
    StorageError if the file is not a marker."""
    path = marker_path(data_dir, partition)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) != _SIZE:
        raise StorageError(f"{path} is damaged: {len(raw)} bytes, a marker has {_SIZE}")
    body, (crc,) = raw[: _BODY.size], struct.unpack(">I", raw[_BODY.size :])
    magic, offset = _BODY.unpack(body)
    if magic != _MAGIC or zlib.crc32(body) != crc:
        raise StorageError(f"{path} is damaged: it fails its checksum")
    return int(offset)


def _encode(next_offset: int) -> bytes:
    body = _BODY.pack(_MAGIC, next_offset)
    return body + struct.pack(">I", zlib.crc32(body))


class AckMarker:
    """The open marker file of one partition, written by the group commit."""

    def __init__(self, data_dir: Path, partition: int) -> None:
        """Open (or create, durably) the marker; the first :meth:`record` syncs it."""
        path = marker_path(data_dir, partition)
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._synced_at = 0.0
        self.next_offset: int | None = None
        if created:  # the new directory entry must be durable too
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def record(self, next_offset: int) -> None:
        """Everything before ``next_offset`` is acknowledged: one in-place write, and a sync
        when the last one is older than :data:`SYNC_INTERVAL_S`."""
        os.pwrite(self._fd, _encode(next_offset), 0)
        self.next_offset = next_offset
        if time.monotonic() - self._synced_at >= SYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        os.fdatasync(self._fd)
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1
