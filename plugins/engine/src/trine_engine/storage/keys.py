"""The storage format: its version, the column families and their key layouts (docs/internals.md,
"Storage").

Integers are big-endian so that RocksDB's byte order is numeric order: a run's rows sort by their
number (journal index, event seq, step index, signal seq), and the log's segments by partition
then offset.
"""

from __future__ import annotations

import struct

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_LOG = struct.Struct(">IQ")

FORMAT_KEY = b"format"
FORMAT_VERSION = b"2"
"""2 added ``attempts`` and ``signals``; a format-1 database is upgraded at open (``upgrade``).

Journaled emits (``ENTRY_KIND_EMIT`` journal entries, ``Emit.index`` in the log's commands) needed
no new format: both are additions to messages the format already stores (an enum value, an
optional field), so a format-2 database written before them opens as it is, and the ``Emit``
commands in its log (no index) still read as they were meant, events that were not journaled. An
engine from before them would read an emit entry as an unknown kind: do not downgrade the engine
while runs that emitted are in flight."""

META = "meta"
LOG = "log"
RUNS = "runs"
ACTIVE = "active"
JOURNAL = "journal"
EVENTS = "events"
ATTEMPTS = "attempts"
SIGNALS = "signals"
IDEM = "idem"
FUNCTIONS = "functions"
FAMILIES = (META, LOG, RUNS, ACTIVE, JOURNAL, EVENTS, ATTEMPTS, SIGNALS, IDEM, FUNCTIONS)


BUILDS_PREFIX = b"build/"
"""``meta`` rows ``build/<build id>\\0<function>`` → the ``FunctionSpec`` that build last
registered: which builds registered which function (a move to a build checks it). Kept in
``meta`` rather than a family of its own so that format 2 stays as it is: an engine from before
builds never reads these keys."""


def build_key(build: str, function: str) -> bytes:
    return BUILDS_PREFIX + build.encode() + b"\0" + function.encode()


def split_build_key(key: bytes) -> tuple[str, str]:
    """(build, function) of a :func:`build_key`."""
    build, _, function = key[len(BUILDS_PREFIX) :].partition(b"\0")
    return build.decode(), function.decode()


APPLIED_PREFIX = b"applied/"


def applied_key(partition: int) -> bytes:
    """``meta`` key holding the last applied offset of ``partition``."""
    return APPLIED_PREFIX + b"%d" % partition


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(raw: bytes) -> int:
    value: int = _U32.unpack(raw)[0]
    return value


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    value: int = _U64.unpack(raw)[0]
    return value


def log_key(partition: int, first_offset: int) -> bytes:
    """``log`` key of the segment whose first record has ``first_offset``."""
    return _LOG.pack(partition, first_offset)


def decode_log_key(key: bytes) -> tuple[int, int]:
    partition, offset = _LOG.unpack(key)
    return int(partition), int(offset)


def partition_prefix(partition: int) -> bytes:
    return _U32.pack(partition)


def run_prefix(run_id: str) -> bytes:
    """Prefix of a run's rows in ``journal``, ``events``, ``attempts`` and ``signals``. Run ids
    have a fixed length (26), so no id is a prefix of another."""
    return run_id.encode()


def run_row_key(run_id: str, number: int) -> bytes:
    """A run's row: its journal entry by index, its event by seq, a step's failed attempts by
    step index, a kept signal by the seq of its ``signal.received`` event."""
    return run_id.encode() + _U32.pack(number)


def row_number(key: bytes) -> int:
    """The number a :func:`run_row_key` ends with."""
    value: int = _U32.unpack_from(key, len(key) - _U32.size)[0]
    return value


# -- retention (docs/internals.md, "Retention") ------------------------------------------------
# Kept in ``meta`` under prefixes of their own, like builds, so that format 2 stays as it is.

ENDED_PREFIX = b"ended/"
"""``ended/<ended_at_ms u64><run id>`` → empty: the finished runs by end time, written in the batch
that ends a run, swept in order by retention. A row whose run was retried (active again, or
ended later) is dropped by the sweep."""

ENDED_BACKFILL_KEY = b"ended_backfill"
"""``meta`` key: ``done`` once every run finished before retention existed has its ``ended/`` row
(the sweep writes them, a bounded batch at a time), else the last run id written so far."""

EXPIRED_PREFIX = b"expired/"
"""``expired/<run id>`` → ``<ended_at_ms u64><retention_ms u64>``: the tombstone of a run
retention deleted, so that it answers ``run_expired`` rather than ``run_not_found``."""

FORGET_PREFIX = b"forget/"
"""``forget/<at_ms u64><run id>`` → empty: when a tombstone goes (one more retention period
after its run was deleted), so tombstones do not grow forever either."""

LOG_START_PREFIX = b"logstart/"
"""``logstart/<partition>`` → the first offset the trimmed log still holds (absent: 0)."""

LOG_MARK_PREFIX = b"logmark/"
"""``logmark/<partition>/<at_ms u64>`` → the applied offset + 1 at that time: the log is trimmed
up to the newest mark older than the retention, so it keeps about that much history."""

SWEPT_PREFIX = b"swept/"
"""``swept/<partition>`` → the newest end-time cutoff retention deleted runs up to: ``trine
check`` does not expect rows of runs created before it."""

_ENDED = struct.Struct(">Q")


def ended_key(ended_at_ms: int, run_id: str) -> bytes:
    return ENDED_PREFIX + _ENDED.pack(max(0, ended_at_ms)) + run_id.encode()


def split_timed_key(prefix: bytes, key: bytes) -> tuple[int, str]:
    """(time, run id) of an :func:`ended_key` or :func:`forget_key` (``prefix`` says which)."""
    at: int = _ENDED.unpack_from(key, len(prefix))[0]
    return at, key[len(prefix) + _ENDED.size :].decode()


def expired_key(run_id: str) -> bytes:
    return EXPIRED_PREFIX + run_id.encode()


def forget_key(at_ms: int, run_id: str) -> bytes:
    return FORGET_PREFIX + _ENDED.pack(max(0, at_ms)) + run_id.encode()


def log_start_key(partition: int) -> bytes:
    return LOG_START_PREFIX + b"%d" % partition


def log_mark_prefix(partition: int) -> bytes:
    return LOG_MARK_PREFIX + b"%d/" % partition


def log_mark_key(partition: int, at_ms: int) -> bytes:
    return log_mark_prefix(partition) + _ENDED.pack(max(0, at_ms))


def swept_key(partition: int) -> bytes:
    return SWEPT_PREFIX + b"%d" % partition


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (the end of a range delete)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        raise ValueError("a prefix of 0xff bytes has no end")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
