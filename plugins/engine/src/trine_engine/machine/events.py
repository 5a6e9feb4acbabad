"""Every event the engine writes, built in one place: its type, its number and its JSON ``data``.

Payloads the engine only carries (step output, run result, signal payload) are embedded byte for
byte, never parsed and re-serialized: they are already JSON, and a 1 MiB result should cost a
copy, not a decode and an encode.
"""

from __future__ import annotations

import json
from typing import Any

from trine_proto.trine.v1 import ErrorInfo, Event
from trine_proto.vocabulary import EventType


def json_or_null(payload: bytes) -> bytes:
    """An empty payload means JSON ``null``."""
    return payload or b"null"


class NewEvents(list[Event]):
    """The events one record adds to one run, in order: numbered on from the run's last seq and
    stamped with the record's time."""

    __slots__ = ("_at_ms", "_last_seq", "_run_id")

    def __init__(self, run_id: str, last_seq: int, at_ms: int) -> None:
        super().__init__()
        self._run_id = run_id
        self._last_seq = last_seq
        self._at_ms = at_ms

    def _add(self, type_: EventType, name: str, data: bytes) -> None:
        self.append(
            Event(
                run_id=self._run_id,
                seq=self._last_seq + len(self) + 1,
                type=type_,
                name=name,
                data=data,
                at_ms=self._at_ms,
            )
        )

    def run_started(self, function: str) -> None:
        self._add(EventType.RUN_STARTED, function, _dumps({"function": function}))

    def step_started(self, name: str, index: int, attempt: int) -> None:
        self._add(EventType.STEP_STARTED, name, _dumps({"index": index, "attempt": attempt}))

    def step_completed(self, name: str, index: int, attempt: int, output: bytes) -> None:
        head = _dumps({"index": index, "attempt": attempt})
        self._add(EventType.STEP_COMPLETED, name, _with(head, b"output", output))

    def step_failed(
        self, name: str, index: int, attempt: int, error: ErrorInfo | None, retry_at_ms: int | None
    ) -> None:
        """With ``retry_at_ms`` when another attempt is scheduled, else ``"final": true``."""
        data: dict[str, Any] = {"index": index, "attempt": attempt, "error": _error(error)}
        if retry_at_ms is None:
            data["final"] = True
        else:
            data["retry_at_ms"] = retry_at_ms
        self._add(EventType.STEP_FAILED, name, _dumps(data))

    def custom(self, name: str, data: bytes) -> None:
        self._add(EventType.CUSTOM, name, json_or_null(data))

    def timer_started(self, name: str, index: int, until_ms: int) -> None:
        self._add(EventType.TIMER_STARTED, name, _timer(index, until_ms))

    def timer_fired(self, name: str, index: int, until_ms: int) -> None:
        self._add(EventType.TIMER_FIRED, name, _timer(index, until_ms))

    def signal_waiting(self, name: str, index: int, timeout_at_ms: int) -> None:
        self._add(EventType.SIGNAL_WAITING, name, _signal_wait(index, timeout_at_ms))

    def signal_timed_out(self, name: str, index: int, timeout_at_ms: int) -> None:
        self._add(EventType.SIGNAL_TIMED_OUT, name, _signal_wait(index, timeout_at_ms))

    def signal_received(self, name: str, payload: bytes, delivered_to: int | None) -> None:
        head = _dumps({"delivered_to": delivered_to})
        self._add(EventType.SIGNAL_RECEIVED, name, _with(head, b"payload", payload))

    def child_started(self, function: str, index: int, child_run_id: str) -> None:
        data = {"index": index, "child_run_id": child_run_id, "function": function}
        self._add(EventType.CHILD_STARTED, function, _dumps(data))

    def child_finished(self, function: str, index: int, child_run_id: str, status: str) -> None:
        data = {"index": index, "child_run_id": child_run_id, "status": status}
        self._add(EventType.CHILD_FINISHED, function, _dumps(data))

    # The run-level events are named after the run's function, as ``run.started`` is.

    def cancel_requested(self, function: str, reason: str, deadline_ms: int) -> None:
        data = {"reason": reason, "deadline_ms": deadline_ms}
        self._add(EventType.CANCEL_REQUESTED, function, _dumps(data))

    def run_completed(self, function: str, result: bytes) -> None:
        self._add(EventType.RUN_COMPLETED, function, json_or_null(result))

    def run_failed(self, function: str, error: ErrorInfo | None) -> None:
        self._add(EventType.RUN_FAILED, function, _dumps(_error(error)))

    def run_cancelled(self, function: str, error: ErrorInfo | None) -> None:
        self._add(EventType.RUN_CANCELLED, function, _dumps(_error(error)))

    def run_blocked(self, function: str, error: ErrorInfo | None, build_id: str) -> None:
        data = {**_error(error), "build_id": build_id}
        self._add(EventType.RUN_BLOCKED, function, _dumps(data))

    def run_retried(
        self, function: str, from_index: int, reason: str, automatic: bool, retries: int
    ) -> None:
        data = {
            "from_index": from_index,
            "reason": reason,
            "automatic": automatic,
            "retries": retries,
        }
        self._add(EventType.RUN_RETRIED, function, _dumps(data))

    def run_moved(self, function: str, from_build: str, to_build: str) -> None:
        data = {"build_id": to_build, "from_build_id": from_build}
        self._add(EventType.RUN_MOVED, function, _dumps(data))


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Built once: ``json.dumps`` with options builds an encoder per call, half its cost here."""


def _dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _with(head: bytes, key: bytes, payload: bytes) -> bytes:
    """``head`` (a JSON object) with one more member holding ``payload``'s JSON as is."""
    return head[:-1] + b',"' + key + b'":' + json_or_null(payload) + b"}"


def _error(info: ErrorInfo | None) -> dict[str, str]:
    info = info or ErrorInfo()
    return {"type": info.type, "message": info.message}


def _timer(index: int, until_ms: int) -> bytes:
    return _dumps({"index": index, "until_ms": until_ms})


def _signal_wait(index: int, timeout_at_ms: int) -> bytes:
    return _dumps({"index": index, "timeout_at_ms": timeout_at_ms or None})
