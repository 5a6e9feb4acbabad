"""Executing one dispatched ``WorkItem``: call the workflow, then report how the run ended.

Kept apart from the stream handling so that the rules for a run's final report (what becomes
``RunCompleted``, what ``RunFailed``, what ends quietly) read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from trine_proto.trine.v1 import (
    Command,
    ErrorInfo,
    RunCompleted,
    RunFailed,
    WorkItem,
)
from trine_proto.vocabulary import ErrorCode, ErrorType

from . import _codec, _tracing
from ._acks import log_final_ack
from ._session import RunReporter
from .context import Context
from .converter import Converter
from .errors import AttemptEnded, CancelledError, ConversionError, RunAborted
from .retry import RetryPolicy

log = logging.getLogger("trine.worker")

WorkflowFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """A registered workflow: its name on the wire, the coroutine function, its retry policy,
    its default run timeout (0: none) and the type its input converts to."""

    name: str
    fn: WorkflowFn
    retry: RetryPolicy | None
    timeout_ms: int = 0
    input_type: Any = None  # the annotation of its input parameter; None: plain JSON


def make_context(
    definition: FunctionDef,
    item: WorkItem,
    reporter: RunReporter,
    *,
    max_payload_bytes: int,
    executor: Executor | None = None,
    converter: Converter | None = None,
) -> Context:
    """The context of one attempt of ``item``'s run; its sync steps run in ``executor``."""
    run = item.run
    assert run is not None  # a work item without a run is never started
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
        executor=executor,
        converter=converter,
    )


async def execute(
    definition: FunctionDef,
    item: WorkItem,
    ctx: Context,
    reporter: RunReporter,
    *,
    max_payload_bytes: int,
) -> None:
    """Run one attempt of ``item``'s run and report its end, unless the attempt ended early,
    in the attempt's span (the run's trace: see ``_tracing``)."""
    run = item.run
    assert run is not None  # a work item without a run is never started
    if not _tracing.enabled():  # the common case: no generator, no span, no context switch
        await _execute(definition, item, ctx, reporter, max_payload_bytes=max_payload_bytes)
        return
    carrier = item.trace_context or run.trace_context
    with _tracing.attempt_span(run.id, definition.name, ctx.attempt, carrier) as span:
        outcome, failure = await _execute(
            definition, item, ctx, reporter, max_payload_bytes=max_payload_bytes
        )
        _tracing.outcome(span, outcome, failure)


async def _execute(
    definition: FunctionDef,
    item: WorkItem,
    ctx: Context,
    reporter: RunReporter,
    *,
    max_payload_bytes: int,
) -> tuple[str, str | None]:
    """The attempt: how it ended (``completed``, ``failed`` or why it ended early) and the
    run's error when it failed."""
    run = item.run
    assert run is not None
    error: ErrorInfo | None = None
    result = b""
    try:
        try:
            payload = ctx.converter.from_json(
                run.input, definition.input_type, f"the input of workflow {definition.name!r}"
            )
        except (ConversionError, ValueError) as exc:
            raise RunAborted(_codec.error_info(exc, retryable=False)) from exc
        value = await definition.fn(ctx, payload)
    except AttemptEnded as ended:
        ctx._runtime_log.debug("attempt %d ended: %s", ctx.attempt, ended.reason)
        return ended.reason, None
    except RunAborted as aborted:
        error = aborted.info
    except CancelledError as exc:
        # Not caught, or raised again after cleaning up: the run ends cancelled.
        error = ctx.fatal or ErrorInfo(type=ErrorType.CANCELLED, message=str(exc), retryable=False)
    except Exception as exc:
        error = ctx.fatal or _codec.error_info(exc)
    else:
        error = ctx.fatal
        if error is None:
            try:
                result = ctx.converter.to_json(value, f"the result of workflow {definition.name!r}")
            except TypeError as exc:
                error = _codec.error_info(exc, retryable=False)
            else:
                if len(result) > max_payload_bytes:
                    error = ErrorInfo(
                        type=ErrorType.PAYLOAD_TOO_LARGE,
                        message=f"the result is {len(result)} bytes; the limit is "
                        f"{max_payload_bytes}",
                    )

    if error is None:
        ack = await reporter.send(Command(run_completed=RunCompleted(result=result)))
        if ack.error_code == ErrorCode.PAYLOAD_TOO_LARGE:
            error = ErrorInfo(type=ErrorType.PAYLOAD_TOO_LARGE, message=ack.error_message)
        else:
            log_final_ack(ack, ctx._runtime_log, reporter.session, "completed")
            return "completed", None
    # One line per attempt that reports the run failed (a retried step ends its attempt above,
    # quietly); the adapter prefixes the function and run id.
    ctx._runtime_log.warning(
        "run failed: %s: %s",
        error.type,
        error.message,
        extra={"error_type": error.type, "error_message": error.message},
    )
    ack = await reporter.send(Command(run_failed=RunFailed(error=error)))
    log_final_ack(
        ack, ctx._runtime_log, reporter.session, f"failed ({error.type}: {error.message})"
    )
    return "failed", f"{error.type}: {error.message}"
