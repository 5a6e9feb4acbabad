"""Log segments: the records of one group commit, each framed with its length and CRC32.

RocksDB checksums its own blocks, but a record's CRC is checked by trine itself, at the record's
granularity, so a corrupt record is reported with its partition and offset instead of being
decoded into garbage (and later shipped to replicas as is).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence

from trine_core import StorageError

_HEADER = struct.Struct(">II")  # length, CRC32 of the record bytes


def frame(records: Sequence[bytes]) -> bytes:
    """One segment value holding ``records`` in order."""
    parts: list[bytes] = []
    for record in records:
        parts.append(_HEADER.pack(len(record), zlib.crc32(record)))
        parts.append(record)
    return b"".join(parts)


def unframe(segment: bytes, partition: int, first_offset: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, record bytes)`` for each record of a segment, checking every CRC; a mismatch or
    a truncated frame raises StorageError naming the partition and the offset."""
    view = memoryview(segment)
    position = 0
    offset = first_offset
    while position < len(view):
        if position + _HEADER.size > len(view):
            raise _corrupt(partition, offset, "its frame header is truncated")
        length, crc = _HEADER.unpack_from(view, position)
        start = position + _HEADER.size
        end = start + length
        if end > len(view):
            raise _corrupt(partition, offset, "it is truncated")
        record = bytes(view[start:end])
        if zlib.crc32(record) != crc:
            raise _corrupt(partition, offset, "it fails its CRC32 check")
        yield offset, record
        position = end
        offset += 1


def count(segment: bytes, partition: int, first_offset: int) -> int:
    """How many records a segment holds (checking them)."""
    return sum(1 for _ in unframe(segment, partition, first_offset))


def _corrupt(partition: int, offset: int, why: str) -> StorageError:
    return StorageError(
        f"log record at partition {partition} offset {offset} is corrupt: {why}",
        partition=partition,
        offset=offset,
    )
