"""Executing one dispatched ``WorkItem``: call the workflow, then report how the run ended.

Kept apart from the stream handling so that the rules for a run's final report (what becomes
``RunCompleted``, what ``RunFailed``, what ``RunBlocked``, what ends quietly) read in one place;
how the workflow's ending is classified is ``_ending``'s, shared with a history's replay.
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
    RunBlocked,
    RunCompleted,
    RunFailed,
    VersioningMode,
    WorkflowErrorMode,
    WorkItem,
)
from trine_proto.vocabulary import ErrorCode, ErrorType

from . import _tracing
from ._acks import log_final_ack
from ._ending import run_workflow
from ._session import RunReporter
from .context import Context
from .converter import Converter
from .retry import RetryPolicy

log = logging.getLogger("trine.worker")

WorkflowFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """A registered workflow: its name on the wire, the coroutine function, its retry policy,
    its default run timeout (0: none), the type its input converts to, which builds may continue
    its runs (``versioning``) and what a workflow error does to a run (``on_workflow_error``)."""

    name: str
    fn: WorkflowFn
    retry: RetryPolicy | None
    timeout_ms: int = 0
    input_type: Any = None  # the annotation of its input parameter; None: plain JSON
    versioning: VersioningMode = VersioningMode.AUTO_UPGRADE
    on_workflow_error: WorkflowErrorMode = WorkflowErrorMode.BLOCK


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
    *,
    max_payload_bytes: int,
    build_id: str = "",
) -> None:
    """Run one attempt of ``item``'s run and report its end, unless the attempt ended early,
    in the attempt's span (the run's trace: see ``_tracing``). ``build_id`` is this worker's
    build, named in the log line of a blocked run."""
    run = item.run
    assert run is not None  # a work item without a run is never started
    if not _tracing.enabled():  # the common case: no generator, no span, no context switch
        await _execute(definition, item, ctx, max_payload_bytes, build_id)
        return
    carrier = item.trace_context or run.trace_context
    with _tracing.attempt_span(run.id, definition.name, ctx.attempt, carrier) as span:
        outcome, failure = await _execute(definition, item, ctx, max_payload_bytes, build_id)
        _tracing.outcome(span, outcome, failure)


async def _execute(
    definition: FunctionDef, item: WorkItem, ctx: Context, max_payload_bytes: int, build_id: str
) -> tuple[str, str | None]:
    """The attempt: how it ended (``completed``, ``failed``, ``blocked`` or why it ended early)
    and the run's error when it did not complete."""
    run = item.run
    assert run is not None
    ending = await run_workflow(definition, run.input, ctx, max_payload_bytes=max_payload_bytes)
    if ending.ended is not None:
        ctx._state.discard_held()
        ctx._runtime_log.debug("attempt %d ended: %s", ctx.attempt, ending.ended)
        return ending.ended, None
    session = ctx._state.reporter.session
    error = ending.error
    if error is None:
        completed = Command(run_completed=RunCompleted(result=ending.result))
        ack = await ctx._state.send(completed, index=None)
        if ack.error_code != ErrorCode.PAYLOAD_TOO_LARGE:
            log_final_ack(ack, ctx._runtime_log, session, "completed")
            return "completed", None
        error = ErrorInfo(type=ErrorType.PAYLOAD_TOO_LARGE, message=ack.error_message)
    elif ending.workflow_error and definition.on_workflow_error != WorkflowErrorMode.FAIL:
        # One line per attempt that blocks its run; the adapter prefixes the function and run.
        ctx._runtime_log.error(
            "run blocked by a workflow error on build %s: %s: %s (it resumes when retried, or "
            "when a worker of another build registers %r)",
            build_id or "(none)",
            error.type,
            error.message,
            definition.name,
            extra=_error_extra(error, build_id),
        )
        ack = await ctx._state.send(Command(run_blocked=RunBlocked(error=error)), index=None)
        what = f"blocked ({error.type}: {error.message})"
        log_final_ack(ack, ctx._runtime_log, session, what)
        return "blocked", f"{error.type}: {error.message}"
    # One line per attempt that reports the run failed (a retried step ends its attempt
    # quietly); the adapter prefixes the function and run id.
    ctx._runtime_log.warning(
        "run failed: %s: %s", error.type, error.message, extra=_error_extra(error, build_id)
    )
    ack = await ctx._state.send(Command(run_failed=RunFailed(error=error)), index=None)
    log_final_ack(ack, ctx._runtime_log, session, f"failed ({error.type}: {error.message})")
    return "failed", f"{error.type}: {error.message}"


def _error_extra(error: ErrorInfo, build_id: str) -> dict[str, str]:
    return {"error_type": error.type, "error_message": error.message, "build_id": build_id}
