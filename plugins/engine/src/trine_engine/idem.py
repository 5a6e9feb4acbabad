"""The ``idem`` family's rows: an idempotency key → the run it started, and the digest of the
request that started it (issue 14: the same key with another request is refused).

A row written before digests were holds the run id alone: its key matches any request, so
existing data reads as before and needs no migration.
"""

from __future__ import annotations

from trine_engine import ulid


def idem_row(run_id: str, request_digest: bytes) -> bytes:
    """An ``idem`` row's value: the run id (a ULID: fixed length), then the request digest."""
    return run_id.encode() + request_digest


def split_idem_row(value: bytes) -> tuple[str, bytes]:
    """(run id, request digest) of an ``idem`` row; the digest is empty in an older row."""
    return value[: ulid.LENGTH].decode(), value[ulid.LENGTH :]


__all__ = ["idem_row", "split_idem_row"]
