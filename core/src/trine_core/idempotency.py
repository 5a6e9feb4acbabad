"""The digest of a start request, kept with its idempotency key (issue 14).

A key used again with the same request returns the earlier run; with another request it is
``idempotency_conflict``, since answering with a run of different input would hide the
client's mistake. Every backend compares these digests, so they are defined once, here.
"""

from __future__ import annotations

import hashlib
import struct

from trine_core.errors import IdempotencyConflict
from trine_proto.trine.v1 import Run

DIGEST_BYTES = 16


def request_digest(function: str, payload: bytes, timeout_ms: int) -> bytes:
    """What makes two starts "the same request": the function, the input's JSON bytes (as the
    gateway re-encodes them, so white space does not count, key order does) and the timeout
    asked for (0: none asked, the function's default applies)."""
    name = function.encode()
    head = struct.pack(">IQ", len(name), max(0, timeout_ms))
    return hashlib.blake2b(head + name + payload, digest_size=DIGEST_BYTES).digest()


def check_same_request(
    key: str, stored: bytes, digest: bytes, earlier: Run, function: str, payload: bytes
) -> None:
    """Raise :class:`IdempotencyConflict` when ``key``'s stored digest is not ``digest``,
    naming what differs from ``earlier``, the run the key started. An empty ``stored`` (a key
    kept before digests were) matches any request."""
    if not stored or stored == digest:
        return
    if earlier.function != function:
        what = f"function {earlier.function!r}, not {function!r}"
    elif earlier.input != payload:
        what = "another input"
    else:
        what = "another timeout"
    raise IdempotencyConflict(
        f"Idempotency-Key {key!r} started run {earlier.id} with a different request ({what}): "
        "use a new key for a new request",
        key=key,
        run_id=earlier.id,
    )


__all__ = ["DIGEST_BYTES", "check_same_request", "request_digest"]
