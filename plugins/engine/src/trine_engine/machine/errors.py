"""The errors the engine itself writes into journals and runs (their types are the vocabulary's
``ErrorType``: a replay in the SDK tells them apart by type)."""

from __future__ import annotations

import dataclasses

from trine_proto.trine.v1 import ErrorInfo, JournalEntry, Run
from trine_proto.vocabulary import ErrorType


def cancelled(run_id: str, reason: str) -> ErrorInfo:
    return ErrorInfo(type=ErrorType.CANCELLED, message=reason or f"run {run_id} was cancelled")


def unknown_function(function: str) -> ErrorInfo:
    return ErrorInfo(
        type=ErrorType.UNKNOWN_FUNCTION,
        message=f"no worker has registered function {function!r}",
    )


def signal_timeout(wait: JournalEntry) -> ErrorInfo:
    seconds = (wait.until_ms - wait.started_at_ms) / 1000
    return ErrorInfo(
        type=ErrorType.SIGNAL_TIMEOUT,
        message=f"no signal {wait.name!r} arrived within {seconds:g}s",
    )


def run_timeout(run_id: str) -> ErrorInfo:
    return ErrorInfo(
        type=ErrorType.RUN_TIMEOUT, message=f"run {run_id} did not finish by its deadline"
    )


def of_child(child: Run) -> ErrorInfo:
    """What a failed or cancelled child's wait in its parent's journal resolves with."""
    error = child.error or ErrorInfo(type=ErrorType.ERROR)
    if error.type == ErrorType.CANCELLED:
        # Not "Cancelled": that type in a parent's journal means the parent's own cancellation,
        # which a replay must tell apart from a child's.
        error = dataclasses.replace(error, type=ErrorType.CHILD_CANCELLED)
    return error
