"""Proto messages → the API's JSON shapes.

Payloads are JSON documents stored as UTF-8 bytes; they are embedded as they are
(``msgspec.Raw``), without a decode and re-encode, and empty bytes read as ``null``. Times are
milliseconds since the epoch in the messages and ISO-8601 UTC with milliseconds here.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from trine_gateway.models import (
    ErrorInfoOut,
    EventOut,
    FunctionOut,
    JournalEntryOut,
    RetryPolicyOut,
    RunOut,
    RunStatusName,
)
from trine_proto.trine.v1 import (
    ErrorInfo,
    Event,
    FunctionSpec,
    JournalEntry,
    RetryPolicy,
    Run,
    RunStatus,
)

NULL = msgspec.Raw(b"null")
FINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
_STATUS_NAMES: dict[RunStatus, RunStatusName] = {
    RunStatus.PENDING: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.SUSPENDED: "suspended",
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}
STATUS_BY_NAME: dict[str, RunStatus] = {name: status for status, name in _STATUS_NAMES.items()}
_json_encoder = msgspec.json.Encoder()


def payload(data: bytes) -> msgspec.Raw:
    """A stored JSON payload, embedded without re-encoding; empty bytes are ``null``."""
    return msgspec.Raw(data) if data else NULL


def encode_input(value: Any) -> bytes:
    """A request's ``input`` as the JSON bytes a run carries."""
    return _json_encoder.encode(value)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch → ``2025-01-31T12:00:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _iso_or_none(ms: int) -> str | None:
    return iso_ms(ms) if ms else None


def status_name(status: RunStatus) -> RunStatusName:
    # An unspecified status never leaves the engine; call it pending rather than fail a read.
    return _STATUS_NAMES.get(status, "pending")


def is_final(run: Run) -> bool:
    return run.status in FINAL_STATUSES


def error_out(error: ErrorInfo | None) -> ErrorInfoOut | None:
    if error is None:
        return None
    return ErrorInfoOut(type=error.type, message=error.message, traceback=error.traceback)


def run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.id,
        function=run.function,
        status=status_name(run.status),
        input=payload(run.input),
        result=payload(run.result) if run.status == RunStatus.COMPLETED else None,
        error=error_out(run.error),
        attempt=run.attempt,
        idempotency_key=run.idempotency_key or None,
        worker_id=run.worker_id or None,
        created_at=iso_ms(run.created_at_ms),
        updated_at=iso_ms(run.updated_at_ms),
    )


def journal_entry_out(entry: JournalEntry) -> JournalEntryOut:
    return JournalEntryOut(
        index=entry.index,
        name=entry.name,
        input_digest=entry.input_digest,
        output=payload(entry.output) if entry.error is None else None,
        error=error_out(entry.error),
        attempt=entry.attempt,
        started_at=_iso_or_none(entry.started_at_ms),
        ended_at=_iso_or_none(entry.ended_at_ms),
    )


def _retry_out(retry: RetryPolicy | None) -> RetryPolicyOut | None:
    if retry is None:
        return None
    return RetryPolicyOut(
        max_attempts=retry.max_attempts,
        initial_interval_ms=retry.initial_interval_ms,
        max_interval_ms=retry.max_interval_ms,
        # a proto float is 32 bits: 1.1 would read back as 1.100000023841858
        backoff_coefficient=float(f"{retry.backoff_coefficient:.6g}"),
    )


def function_out(spec: FunctionSpec) -> FunctionOut:
    return FunctionOut(name=spec.name, retry=_retry_out(spec.retry))


def event_out(event: Event) -> EventOut:
    return EventOut(
        seq=event.seq,
        type=event.type,
        name=event.name,
        data=payload(event.data),
        at=_iso_or_none(event.at_ms),
    )


def event_json(event: Event) -> str:
    """One event as the compact JSON line an SSE ``data:`` field carries."""
    return _json_encoder.encode(event_out(event)).decode()
