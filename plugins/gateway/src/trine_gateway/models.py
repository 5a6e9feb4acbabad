"""The JSON shapes of the HTTP API, as msgspec structs: litestar validates request bodies against
them and documents every one in the OpenAPI schema.

Payload fields (``input``, ``result``, ``output``, ``data``) are typed ``Any``: they are the run's
own JSON documents, passed through as they were stored (see :mod:`trine_gateway.serialization`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

RunStatusName = Literal["pending", "running", "suspended", "completed", "failed", "cancelled"]
"""A run's status as the API spells it: the proto enum's name, lower-cased."""


class StartRunBody(msgspec.Struct, forbid_unknown_fields=False):
    """``POST /v1/runs``: which function to run, with what input."""

    function: Annotated[str, msgspec.Meta(min_length=1, description="a registered function")]
    input: Any = None


class CancelBody(msgspec.Struct):
    """``POST /v1/runs/{id}/cancel``: an optional reason, kept in the run's error message."""

    reason: str = ""


class ErrorInfoOut(msgspec.Struct):
    type: str
    message: str
    traceback: str


class RunOut(msgspec.Struct):
    id: str
    function: str
    status: RunStatusName
    input: Any
    result: Any
    """``null`` unless the run completed."""
    error: ErrorInfoOut | None
    attempt: int
    idempotency_key: str | None
    worker_id: str | None
    created_at: str
    """ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    updated_at: str


class RunListOut(msgspec.Struct):
    runs: list[RunOut]
    next_page_token: str | None
    """Pass it back as ``page_token`` for the next page; ``null`` on the last page."""


class JournalEntryOut(msgspec.Struct):
    index: int
    name: str
    input_digest: str
    output: Any
    error: ErrorInfoOut | None
    attempt: int
    started_at: str | None
    ended_at: str | None


class JournalOut(msgspec.Struct):
    entries: list[JournalEntryOut]


class RetryPolicyOut(msgspec.Struct):
    max_attempts: int
    initial_interval_ms: int
    max_interval_ms: int
    backoff_coefficient: float


class FunctionOut(msgspec.Struct):
    name: str
    retry: RetryPolicyOut | None


class FunctionListOut(msgspec.Struct):
    functions: list[FunctionOut]


class EventOut(msgspec.Struct):
    """The ``data:`` of one server-sent event; its ``id:`` is ``seq`` and its ``event:`` is
    ``type``."""

    seq: int
    type: str
    name: str
    data: Any
    at: str | None


class HealthOut(msgspec.Struct, omit_defaults=True):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    """Stable: ``invalid_request``, ``malformed_json``, ``unknown_function``, ``run_not_found``…"""
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct):
    """Every error response: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorDetail
