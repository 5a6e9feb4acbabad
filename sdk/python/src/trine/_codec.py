"""Payload encoding: JSON as UTF-8 bytes, input digests, error descriptions, wall-clock stamps.

Every payload the engine stores (run input, step output, result, event data) is a JSON document
in bytes, so the gateway can hand it to HTTP clients untouched. One encoder is used everywhere so
that an output encodes the same way on every attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from typing import Any

from trine_proto.trine.v1 import ErrorInfo
from trine_proto.vocabulary import now_ms

__all__ = ["decode", "digest", "encode", "error_info", "now_ms"]

from .errors import NonRetryableError

# A traceback is diagnostics, not data: keep the tail (where the error is) within a bound so a
# deep recursion cannot push a report over the payload limit.
MAX_TRACEBACK_CHARS = 16_000
# The SDK's own files: their frames are trimmed from the tracebacks a run reports, which show
# the user's code (the SDK's frames are the same in every traceback and say nothing of the bug).
_SDK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Built once: ``json.dumps`` with options builds an encoder per call, half its cost for a small
payload (every step output, every result)."""


def encode(value: Any) -> bytes:
    """``value`` as compact JSON bytes; raises ``TypeError``/``ValueError`` when it is not JSON.

    ``allow_nan=False``: NaN and infinities are not JSON, and a payload other languages cannot
    parse would only fail later, far from its cause.
    """
    return _ENCODER.encode(value).encode()


def decode(data: bytes) -> Any:
    """The JSON value in ``data``; empty bytes mean ``null`` (the proto default)."""
    if not data:
        return None
    return json.loads(data)


def digest(args: tuple[Any, ...]) -> str:
    """A short fingerprint of a step's arguments, for spotting a replay with different input.

    Arguments that are not JSON are fingerprinted by their ``repr`` rather than refused: the digest
    is diagnostics, and a step may legitimately take an object it does not return. A pydantic
    model counts as its fields (its ``repr`` is slow, and differs from the dict it came from).
    """
    text = json.dumps(list(args), sort_keys=True, separators=(",", ":"), default=_fingerprint)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fingerprint(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None and not isinstance(value, type):
        return dump(mode="json")
    return repr(value)


def error_info(exc: BaseException, *, retryable: bool | None = None) -> ErrorInfo:
    """Describe ``exc`` for the engine: class name, message, formatted traceback (the user's
    frames: ``user_traceback``), retryability.

    By default an error is retryable unless it is a ``NonRetryableError``.
    """
    text = user_traceback(exc)
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "…" + text[-MAX_TRACEBACK_CHARS:]
    return ErrorInfo(
        type=type(exc).__name__,
        message=str(exc),
        traceback=text,
        retryable=not isinstance(exc, NonRetryableError) if retryable is None else retryable,
    )


def user_traceback(exc: BaseException) -> str:
    """``exc`` formatted as Python does, without the frames of the SDK's own files (in the
    chained exceptions too): what is left is the user's code, from the workflow or step
    function down to where it raised."""
    summary = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending = [summary]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = [frame for frame in current.stack if not frame.filename.startswith(_SDK_DIR)]
        current.stack = traceback.StackSummary.from_list(frames)
        pending.extend(c for c in (current.__cause__, current.__context__) if c is not None)
        pending.extend(current.exceptions or ())
    return "".join(summary.format())
