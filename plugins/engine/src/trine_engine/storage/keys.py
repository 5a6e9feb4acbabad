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
