"""Executing one dispatched ``WorkItem``: call the workflow, then report how the run ended.

Kept apart from the stream handling so that the rules for a run's final report (what becomes
``RunCompleted``, what ``RunFailed``, what ends quietly) read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from trine_proto.trine.v1 import (
    Command,
    ErrorInfo,
    ReportAck,
    RunCompleted,
    RunFailed,
    WorkItem,
)

from . import _codec
from ._session import LEASE_LOST, PAYLOAD_TOO_LARGE, UNAVAILABLE, RunReporter
from .context import CANCELLED, Context, RunAborted
from .errors import AttemptEnded, CancelledError
from .retry import RetryPolicy

log = logging.getLogger("trine.worker")

WorkflowFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """A registered workflow: its name on the wire, the coroutine function, its retry policy and
    its default run timeout (0: none)."""

    name: str
    fn: WorkflowFn
    retry: RetryPolicy | None
    timeout_ms: int = 0


def make_context(
    definition: FunctionDef, item: WorkItem, reporter: RunReporter, *, max_payload_bytes: int
) -> Context:
    """The context of one attempt of ``item``'s run."""
    run = item.run
    return Context(
        run_id=run.id,
        function=definition.name,
        attempt=item.lease.attempt if item.lease is not None else run.attempt,
        journal=list(item.journal),
        step_attempts=dict(item.step_attempts),
        reporter=reporter,
        max_payload_bytes=max_payload_bytes,
        logger=log,
        cancel_requested=run.cancel_requested,
    )


async def execute(
    definition: FunctionDef,
    item: WorkItem,
    ctx: Context,
    reporter: RunReporter,
    *,
    max_payload_bytes: int,
) -> None:
    """Run one attempt of ``item``'s run and report its end, unless the attempt ended early."""
    run = item.run
    error: ErrorInfo | None = None
    result = b""
    try:
        try:
            payload = _codec.decode(run.input)
        except ValueError as exc:
            raise RunAborted(_codec.error_info(exc, retryable=False)) from exc
        value = await definition.fn(ctx, payload)
    except AttemptEnded as ended:
        ctx.log.debug("attempt %d ended: %s", ctx.attempt, ended.reason)
        return
    except RunAborted as aborted:
        error = aborted.info
    except CancelledError as exc:
        # Not caught, or raised again after cleaning up: the run ends cancelled.
        error = ctx.fatal or ErrorInfo(type=CANCELLED, message=str(exc), retryable=False)
    except Exception as exc:
        error = ctx.fatal or _codec.error_info(exc)
    else:
        error = ctx.fatal
        if error is None:
            try:
                result = _codec.encode(value)
            except (TypeError, ValueError) as exc:
                error = _codec.error_info(
                    TypeError(f"the result of {definition.name!r} is not JSON-serializable: {exc}"),
                    retryable=False,
                )
            else:
                if len(result) > max_payload_bytes:
                    error = ErrorInfo(
                        type="PayloadTooLarge",
                        message=f"the result is {len(result)} bytes; the limit is "
                        f"{max_payload_bytes}",
                    )

    if error is None:
        ack = await reporter.send(Command(run_completed=RunCompleted(result=result)))
        if ack.error_code == PAYLOAD_TOO_LARGE:
            error = ErrorInfo(type="PayloadTooLarge", message=ack.error_message)
        else:
            _final_ack(ctx, reporter, ack, "completed")
            return
    ack = await reporter.send(Command(run_failed=RunFailed(error=error)))
    _final_ack(ctx, reporter, ack, f"failed ({error.type}: {error.message})")


def _final_ack(ctx: Context, reporter: RunReporter, ack: ReportAck, what: str) -> None:
    code, message = ack.error_code, ack.error_message
    if not code:
        ctx.log.debug("run %s", what)
    elif code == LEASE_LOST:
        ctx.log.info("lease lost before the run's end was recorded (%s)", message)
    elif code == UNAVAILABLE:
        ctx.log.warning("the engine is unavailable (%s); reconnecting", message)
        reporter.session.abort(f"engine unavailable: {message}")
    else:
        ctx.log.error("the engine refused the run's final report: %s: %s", code, message)
