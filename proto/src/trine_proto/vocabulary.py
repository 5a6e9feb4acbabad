"""The words every trine component speaks, defined once: event types, the error types the runtime
writes into journals and runs, the error codes carried across every seam, final statuses, the
signal-name rule, and how a duration in seconds becomes the milliseconds the messages carry.

It lives beside the messages because every component already depends on them: the engine writes
these words, the gateway and the coordinator pass them on, the worker SDK and the HTTP client read
them. A component that needs one imports it from here; none spells it again.
"""

from __future__ import annotations

import json
import math
import re
import time
from enum import StrEnum
from typing import Any

from trine_proto.trine.v1 import RunStatus


class EventType(StrEnum):
    """``Event.type``: what happened to a run. The SSE ``event:`` field carries it as is."""

    RUN_STARTED = "run.started"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    CUSTOM = "custom"
    TIMER_STARTED = "timer.started"
    TIMER_FIRED = "timer.fired"
    SIGNAL_WAITING = "signal.waiting"
    SIGNAL_RECEIVED = "signal.received"
    SIGNAL_TIMED_OUT = "signal.timed_out"
    CHILD_STARTED = "child.started"
    CHILD_FINISHED = "child.finished"
    CANCEL_REQUESTED = "run.cancel_requested"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_BLOCKED = "run.blocked"
    """A workflow error held the run (``on_workflow_error = block``); not final."""
    RUN_RETRIED = "run.retried"
    """A failed or blocked run resumed from its journal: a stream goes on past its end."""
    RUN_MOVED = "run.moved"


FINAL_EVENT_TYPES = frozenset(
    {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)
"""A run's last event is one of these; an event stream ends after it."""

STREAM_ERROR_EVENT = "stream.error"
"""The SSE event a gateway sends when the stream itself fails (not the run): its data is
``{"error": {"code", "message"}}``."""


class ErrorType(StrEnum):
    """``ErrorInfo.type`` values the runtime and the SDK write themselves. A workflow's own errors
    carry their exception's class name instead, so these names are reserved."""

    CANCELLED = "Cancelled"
    """The run's own cancellation (a wait or step it interrupted, or the run's end)."""
    CHILD_CANCELLED = "ChildCancelled"
    """A child run was cancelled: never ``Cancelled`` in a parent's journal, which a replay
    would take for the parent's own cancellation."""
    SIGNAL_TIMEOUT = "SignalTimeout"
    RUN_TIMEOUT = "RunTimeout"
    UNKNOWN_FUNCTION = "UnknownFunction"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    REPORT_REFUSED = "ReportRefused"
    PROTOCOL_ERROR = "ProtocolError"
    WORKER_LOST = "WorkerLost"
    """The run's workers kept being lost (dropped, crashed) with no progress: the coordinator
    failed it rather than dispatch it again in a loop (``[coordinator] max_worker_losses``)."""
    ERROR = "Error"
    """A failure that came without an error of its own."""


class ErrorCode(StrEnum):
    """Stable codes of the errors that cross a seam: an API error's ``code``, a gRPC error's
    body, a worker's ``ReportAck.error_code``. Callers match on these, never on messages."""

    INTERNAL = "internal"
    INVALID_ARGUMENT = "invalid_argument"
    UNKNOWN_FUNCTION = "unknown_function"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RUN_NOT_FOUND = "run_not_found"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    RUN_EXPIRED = "run_expired"
    RUN_FINISHED = "run_finished"
    RUN_NOT_RETRYABLE = "run_not_retryable"
    KEPT_SIGNALS_FULL = "kept_signals_full"
    UNKNOWN_BUILD = "unknown_build"
    LEASE_LOST = "lease_lost"
    UNAVAILABLE = "unavailable"
    CONFIG_ERROR = "config_error"
    STORAGE_ERROR = "storage_error"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    WORKER_ID_IN_USE = "worker_id_in_use"


TRANSIENT_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.STORAGE_ERROR})
"""A refusal with one of these codes says the server cannot take changes now, nothing about the
request: a worker whose report gets one starts its stream over (its runs are dispatched again
and replay) rather than failing the run, and a client may retry later."""


FINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
"""A run in one of these has ended for good."""


def is_final(status: RunStatus | int) -> bool:
    return status in FINAL_STATUSES


def status_name(status: RunStatus | int) -> str:
    """``RunStatus.COMPLETED`` → ``"completed"``: how the API and logs spell a status."""
    try:
        return RunStatus(status).name.lower()
    except ValueError:
        return f"status {int(status)}"


MAX_SIGNAL_NAME = 200
SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
"""A signal name is a URL path segment (``/v1/runs/{id}/signals/{name}``), so it is kept to
characters that need no escaping."""


def signal_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a signal name, in a sentence; None when it is valid. The
    engine, the gateway and the SDK each raise their own error type with this sentence."""
    if not 1 <= len(name) <= MAX_SIGNAL_NAME:
        return f"a signal name is 1 to {MAX_SIGNAL_NAME} characters, not {len(name)}"
    if SIGNAL_NAME.fullmatch(name) is None:
        bad = sorted({c for c in name if SIGNAL_NAME.fullmatch(c) is None})
        return (
            f"a signal name is made of ASCII letters, digits and _ . : -; "
            f"{name!r} has {''.join(bad)!r}"
        )
    return None


MAX_NAME = 200
"""The longest function name or ``worker_id`` (characters): both are logged with every line about
them, listed by the API and labelled in metrics, so a worker's 1 MB id must not be."""


def name_problem(name: str, what: str) -> str | None:
    """What is wrong with ``name`` as ``what`` (a function's name, a ``worker_id``), in a
    sentence; None when it is at most :data:`MAX_NAME` printable characters (a NUL, a newline or
    a line separator would break a log line or a metric label). An empty one is the caller's to
    refuse or default."""
    if len(name) > MAX_NAME:
        return f"{what} is {len(name)} characters; at most {MAX_NAME}"
    if not name.isprintable():
        return f"{what} {name!r} has a character that is not printable"
    return None


MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000
"""The longest span a message may ask for (100 years): a sleep, a signal wait's or a child's
timeout, a run's or a function's timeout. Time is carried as uint64 milliseconds since the epoch,
and a due time is the moment a command arrives plus its span, so without a bound one worker's
``Sleep(duration_ms=2**64 - 1)`` would overflow the record that journals it."""


def duration_problem(ms: int, what: str) -> str | None:
    """What is wrong with ``ms`` as ``what`` (a span in milliseconds), in a sentence; None when
    it is within :data:`MAX_DURATION_MS`. As :func:`signal_name_problem`, each component raises
    its own error type with it."""
    if ms > MAX_DURATION_MS:
        return f"{what} is {ms} ms, more than the {MAX_DURATION_MS} ms (100 years) a span may be"
    return None


def json_problem(payload: bytes) -> str | None:
    """What keeps ``payload`` from being one JSON value in UTF-8, in a few words; None when it is
    one. Stricter than ``json.loads`` alone, which guesses UTF-16 and UTF-32, skips a byte order
    mark and takes ``NaN`` and the infinities: none of them is JSON another parser takes. A
    payload nested past the interpreter's recursion limit (about 1,000 levels) is refused too.
    About 7 µs for a small document, 40 ms for 1 MiB of small objects."""
    try:
        json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        return "it nests too deeply"
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        return str(exc)
    return None


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def timeout_to_ms(seconds: float) -> int:
    """A timeout or deadline in seconds → milliseconds, at least 1: in the messages 0 means
    "none", so a tiny positive timeout must not round to it."""
    return max(1, seconds_to_ms(seconds))


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch: the unit of every timestamp the messages
    carry."""
    return time.time_ns() // 1_000_000


def seconds_to_ms(seconds: float) -> int:
    """A duration in seconds → whole milliseconds, rounded up.

    Rounded to a nanosecond first, so that a float's binary error does not add a millisecond:
    ``4.03 * 1000`` is ``4030.0000000000005``, which is 4030, not 4031. Every duration a user
    gives in seconds (a sleep, a timeout, a retry interval) goes through this one function.
    """
    return math.ceil(round(seconds * 1000, 6))
