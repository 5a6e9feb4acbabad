"""The JSON ``data`` of each event type.

Payloads the engine only carries (step output, run result) are embedded byte for byte, never
parsed and re-serialized: they are already JSON, and a 1 MiB result should cost a copy, not a
decode and an encode.
"""

from __future__ import annotations

import json
from typing import Any

from trine_proto.trine.v1 import ErrorInfo

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
FINAL_TYPES = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_or_null(payload: bytes) -> bytes:
    """An empty payload means JSON ``null``."""
    return payload or b"null"


def run_started(function: str) -> bytes:
    return _dumps({"function": function})


def step_started(index: int, attempt: int) -> bytes:
    return _dumps({"index": index, "attempt": attempt})


def step_completed(index: int, attempt: int, output: bytes) -> bytes:
    head = _dumps({"index": index, "attempt": attempt})
    return head[:-1] + b',"output":' + json_or_null(output) + b"}"


def error(info: ErrorInfo | None) -> dict[str, str]:
    info = info or ErrorInfo()
    return {"type": info.type, "message": info.message}


def step_failed(index: int, attempt: int, info: ErrorInfo | None, retry_at_ms: int | None) -> bytes:
    """With ``retry_at_ms`` when another attempt is scheduled, else ``"final": true``."""
    data: dict[str, Any] = {"index": index, "attempt": attempt, "error": error(info)}
    if retry_at_ms is None:
        data["final"] = True
    else:
        data["retry_at_ms"] = retry_at_ms
    return _dumps(data)


def run_error(info: ErrorInfo | None) -> bytes:
    """``run.failed`` and ``run.cancelled``."""
    return _dumps(error(info))


def timer(index: int, until_ms: int) -> bytes:
    """``timer.started`` and ``timer.fired``."""
    return _dumps({"index": index, "until_ms": until_ms})


def signal_waiting(index: int, timeout_at_ms: int) -> bytes:
    """``signal.waiting`` and ``signal.timed_out``."""
    return _dumps({"index": index, "timeout_at_ms": timeout_at_ms or None})


def signal_received(payload: bytes, delivered_to: int | None) -> bytes:
    """The payload is kept here byte for byte: a restart recovers undelivered signals from it."""
    head = _dumps({"delivered_to": delivered_to})
    return head[:-1] + b',"payload":' + json_or_null(payload) + b"}"


def signal_payload(data: bytes) -> bytes:
    """The payload of a ``signal.received`` event's data, as JSON."""
    return _dumps(json.loads(data)["payload"])


def child_started(index: int, child_run_id: str, function: str) -> bytes:
    return _dumps({"index": index, "child_run_id": child_run_id, "function": function})


def child_finished(index: int, child_run_id: str, status: str) -> bytes:
    return _dumps({"index": index, "child_run_id": child_run_id, "status": status})


def cancel_requested(reason: str, deadline_ms: int) -> bytes:
    return _dumps({"reason": reason, "deadline_ms": deadline_ms})
