"""Proto messages → the API's JSON shapes.

Payloads are JSON documents stored as UTF-8 bytes; they are embedded as they are
(``msgspec.Raw``), without a decode and re-encode, and empty bytes read as ``null``. Times are
milliseconds since the epoch in the messages and ISO-8601 UTC with milliseconds here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeGuard, get_args

import msgspec

from trine_gateway.models import (
    HISTORY_FORMAT,
    BuildOut,
    EntryKindName,
    ErrorInfoOut,
    EventOut,
    FunctionOut,
    HistoryOut,
    JournalEntryOut,
    KeptSignalsOut,
    RetryPolicyOut,
    RunInFlightOut,
    RunOut,
    RunStatusName,
    VersioningName,
    WaitKindName,
    WaitOut,
    WorkerOut,
    WorkflowErrorName,
)
from trine_proto.trine.v1 import (
    BuildInfo,
    EntryKind,
    ErrorInfo,
    Event,
    FunctionSpec,
    JournalEntry,
    RetryPolicy,
    Run,
    RunInFlight,
    RunStatus,
    VersioningMode,
    Wait,
    WorkerInfo,
    WorkflowErrorMode,
)
from trine_proto.vocabulary import status_name as vocabulary_status_name

NULL = msgspec.Raw(b"null")
_RUN_STATUS_NAMES = frozenset(get_args(RunStatusName))


def _is_run_status_name(name: str) -> TypeGuard[RunStatusName]:
    return name in _RUN_STATUS_NAMES


# The names are the shared vocabulary's; RunStatusName lists them for the API's schema.
_STATUS_NAMES: dict[RunStatus, RunStatusName] = {
    status: name
    for status in RunStatus
    if _is_run_status_name(name := vocabulary_status_name(status))
}
STATUS_BY_NAME: dict[str, RunStatus] = {name: status for status, name in _STATUS_NAMES.items()}
_WAIT_KIND_NAMES: dict[EntryKind, WaitKindName] = {
    EntryKind.SLEEP: "sleep",
    EntryKind.SIGNAL: "signal",
    EntryKind.CHILD: "child",
}
_ENTRY_KIND_NAMES: dict[EntryKind, EntryKindName] = {
    EntryKind.STEP: "step",
    **_WAIT_KIND_NAMES,
    EntryKind.CANCEL: "cancel",
    EntryKind.EMIT: "emit",
    EntryKind.PATCH: "patch",
}
_VERSIONING_NAMES: dict[VersioningMode, VersioningName] = {
    VersioningMode.UNSPECIFIED: "auto_upgrade",  # the proto's default
    VersioningMode.AUTO_UPGRADE: "auto_upgrade",
    VersioningMode.PINNED: "pinned",
}
_WORKFLOW_ERROR_NAMES: dict[WorkflowErrorMode, WorkflowErrorName] = {
    WorkflowErrorMode.UNSPECIFIED: "block",  # the proto's default
    WorkflowErrorMode.BLOCK: "block",
    WorkflowErrorMode.FAIL: "fail",
}
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


def error_out(error: ErrorInfo | None) -> ErrorInfoOut | None:
    if error is None:
        return None
    return ErrorInfoOut(type=error.type, message=error.message, traceback=error.traceback)


def entry_kind_name(kind: EntryKind) -> EntryKindName:
    # An unknown kind would come from a newer engine; call it a step rather than fail a read.
    return _ENTRY_KIND_NAMES.get(kind, "step")


def wait_out(wait: Wait) -> WaitOut | None:
    kind = _WAIT_KIND_NAMES.get(wait.kind)
    if kind is None:
        return None  # the engine only waits on sleeps, signals and children
    return WaitOut(
        kind=kind,
        index=wait.index,
        name=wait.name,
        until=_iso_or_none(wait.until_ms),
        child_run_id=wait.child_run_id or None,
    )


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
        cancel_requested=run.cancel_requested,
        cancel_deadline=_iso_or_none(run.cancel_deadline_ms),
        parent_run_id=run.parent_run_id or None,
        deadline=_iso_or_none(run.deadline_ms),
        waiting=[out for out in map(wait_out, run.waiting) if out is not None],
        build_id=run.build_id or None,
        blocked_build_id=run.blocked_build_id or None,
        retries=run.retries,
        waiting_for_build=run.waiting_for_build or None,
        kept_signals=[KeptSignalsOut(k.name, k.count, k.bytes) for k in run.kept_signals],
    )


def journal_entry_out(entry: JournalEntry) -> JournalEntryOut:
    return JournalEntryOut(
        index=entry.index,
        kind=entry_kind_name(entry.kind),
        name=entry.name,
        input_digest=entry.input_digest,
        output=payload(entry.output) if entry.error is None else None,
        error=error_out(entry.error),
        attempt=entry.attempt,
        started_at=_iso_or_none(entry.started_at_ms),
        ended_at=_iso_or_none(entry.ended_at_ms),
        pending=entry.pending,
        until=_iso_or_none(entry.until_ms),
        child_run_id=entry.child_run_id or None,
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
    return FunctionOut(
        name=spec.name,
        retry=_retry_out(spec.retry),
        timeout_s=spec.timeout_ms / 1000 if spec.timeout_ms else None,
        # an unknown mode would come from a newer engine; call it the default
        versioning=_VERSIONING_NAMES.get(spec.versioning, "auto_upgrade"),
        on_workflow_error=_WORKFLOW_ERROR_NAMES.get(spec.on_workflow_error, "block"),
        build_id=spec.build_id or None,
    )


def history_out(run: Run, entries: Iterable[JournalEntry], now_ms: int) -> HistoryOut:
    """A run and its journal in the ``trine.history/1`` format, exported at ``now_ms``: the
    same run and entry shapes as the API's own reads, so a history reads like them."""
    return HistoryOut(
        format=HISTORY_FORMAT,
        exported_at=iso_ms(now_ms),
        run=run_out(run),
        journal=[journal_entry_out(entry) for entry in entries],
    )


def build_out(build: BuildInfo) -> BuildOut:
    return BuildOut(
        build_id=build.build_id,
        functions=list(build.functions),
        open_runs=build.open_runs,
        connected=build.connected,
        last_seen=_iso_or_none(build.last_seen_ms),
    )


def run_in_flight_out(run: RunInFlight) -> RunInFlightOut:
    return RunInFlightOut(
        run_id=run.run_id,
        function=run.function,
        since=_iso_or_none(run.since_ms),
        attempt=run.attempt,
        step=run.step or None,
    )


def worker_out(worker: WorkerInfo) -> WorkerOut:
    return WorkerOut(
        worker_id=worker.worker_id,
        session_id=worker.session_id,
        sdk_version=worker.sdk_version or None,
        functions=list(worker.functions),
        max_concurrency=worker.max_concurrency,
        in_flight=worker.in_flight,
        free_slots=worker.free_slots,
        runs=[run_in_flight_out(run) for run in worker.runs],
        connected_at=iso_ms(worker.connected_at_ms),
        last_heartbeat_at=iso_ms(worker.last_heartbeat_at_ms),
        draining=worker.draining,
        coordinator=worker.coordinator,
        build_id=worker.build_id or None,
    )


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
