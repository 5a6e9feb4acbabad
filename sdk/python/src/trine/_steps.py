"""``ctx.step``: run a function once, durably, and report how it went.

Before its body runs, every step result the workflow has seen is made durable, and the new
step's ``StepStarted`` goes in that same report. With nothing to make durable (the first step, a
step after a wait), the ``StepStarted`` is held back for ``STEP_STARTED_DELAY_S``: a step that ends
sooner reports started and completed (or failed) together; a longer one announces its start (not
awaited) when the delay runs out, so an event stream still shows a slow step as it begins.

A completed step returns its value at once and its result is *held* for the run's next report
(``Attempt.hold_result``): the next step's start, a wait, an event or the run's end. So a
three-step run costs three durable commits (the last step's result commits with the run's end),
and a result is durable before anything that could depend on it leaves the worker. A failed step
still waits for its ack: the engine decides whether it is retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from trine_proto.trine.v1 import (
    Command,
    EntryKind,
    ErrorInfo,
    JournalEntry,
    ReportAck,
    ReportOutcome,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from trine_proto.vocabulary import ErrorType

from . import _codec, _declared, _durations, _step_body, _tracing
from ._attempt import Attempt
from .errors import AttemptEnded, CancelledError, StepError
from .retry import RetryPolicy

STEP_STARTED_DELAY_S = 0.02


async def step(
    attempt: Attempt,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    retry: RetryPolicy | None,
    limit: float | timedelta | None,
    inline: bool = False,
) -> Any:
    """``ctx.step``: the journaled output when replaying, else run ``fn(*args)`` and report it.

    Where ``fn`` runs (a task on the loop, a step thread, or inline) is ``_step_body``'s. A
    failure is reported with ``retry`` (the function's policy when None); when the engine
    schedules a retry the attempt ends here, otherwise ``StepError`` is raised."""
    if not name:
        raise ValueError("a step needs a name")
    seconds = None if limit is None else _durations.seconds(limit, "a step's timeout")
    index, entry = attempt.next(EntryKind.STEP, name)
    if entry is not None:
        return attempt.value(entry, _declared.return_type(fn), _output_of(attempt, name))
    number = attempt.journal.step_attempt(index)
    started = Command(step_started=StepStarted(index=index, name=name, attempt=number))
    # The body is an effect: every result the workflow has seen is made durable first, the
    # step's start going with them; an ack may announce a cancellation, told here before the
    # body runs. The SDK's own inline bodies (ctx.now...) have no effect: nothing to wait for.
    told = attempt.cancel_requested and not attempt.cancel_delivered
    announced = not inline and not told and await attempt.make_durable(started)
    await attempt.deliver_pending_cancel(index, name)

    call = (attempt, index, number, name, fn, args, retry, seconds, inline, started, announced)
    if not _tracing.enabled():  # the common case: no generator, no span, no context switch
        return await _execute(*call)
    with _tracing.step_span(attempt.run_id, attempt.function, name, index, number) as span:
        try:
            value = await _execute(*call)
        except AttemptEnded as ended:
            _tracing.outcome(span, ended.reason)
            raise
        except CancelledError as exc:
            _tracing.outcome(span, "cancelled", exc)
            raise
        except StepError as exc:
            _tracing.outcome(span, "failed", exc)
            raise
        _tracing.outcome(span, "completed")
        return value


async def _execute(
    attempt: Attempt,
    index: int,
    number: int,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    retry: RetryPolicy | None,
    seconds: float | None,
    inline: bool,
    started_cmd: Command,
    announced: bool,
) -> Any:
    """Step attempt ``number`` of the step at ``index``: run it and report how it went
    (``started_cmd`` is its ``StepStarted``, sent already when ``announced``)."""
    input_digest = _codec.digest(args)
    turn = attempt.claim_turn()
    started: list[asyncio.Future[ReportAck]] = []
    announce: asyncio.TimerHandle | None = None
    unannounced: list[Command] = []
    try:
        if not announced:
            announce = asyncio.get_running_loop().call_later(
                STEP_STARTED_DELAY_S, lambda: started.append(attempt.reporter.send(started_cmd))
            )
            unannounced = [started_cmd]
        started_at = _codec.now_ms()
        failure: BaseException | None = None
        info: ErrorInfo | None = None
        output = b""
        try:
            value = await _step_body.run(attempt, name, fn, args, seconds, inline=inline)
        except CancelledError as exc:
            failure = exc
            info = ErrorInfo(type=ErrorType.CANCELLED, message=str(exc), retryable=False)
        except Exception as exc:
            failure, info = exc, _codec.error_info(exc)
        else:
            failure, info, output, value = _convert_output(attempt, name, fn, value)
        if announce is not None:
            announce.cancel()
        if started:
            unannounced = []
        await turn.wait()
        for future in started:
            await attempt.settle(future)

        if info is None:
            # Held for the next report of the run (see ``Attempt.hold_result``): the workflow
            # goes on now, and nothing with an effect happens before this result is durable.
            attempt.hold_result(
                index,
                *unannounced,
                Command(
                    step_completed=StepCompleted(
                        entry=JournalEntry(
                            index=index,
                            name=name,
                            input_digest=input_digest,
                            output=output,
                            attempt=number,
                            started_at_ms=started_at,
                            ended_at_ms=_codec.now_ms(),
                        )
                    )
                ),
            )
            return value

        failed = attempt.send(
            *unannounced,
            Command(
                step_failed=StepFailed(
                    index=index,
                    name=name,
                    attempt=number,
                    error=info,
                    retry=retry.to_proto() if retry is not None else None,
                    started_at_ms=started_at,
                    input_digest=input_digest,
                )
            ),
            index=index,
        )
        outcome = (await attempt.settle(failed)).outcome
        if outcome == ReportOutcome.RETRY_SCHEDULED:
            attempt.log.info(
                "step %d (%r) attempt %d failed (%s: %s); retry scheduled",
                index,
                name,
                number,
                info.type,
                info.message,
                extra={"step": name, "step_attempt": number},
            )
            raise AttemptEnded("retry scheduled")
        if isinstance(failure, CancelledError):
            attempt.cancel_delivered = True
            raise failure
        raise StepError(name, index, info.type, info.message, info.traceback) from failure
    finally:
        if announce is not None:
            announce.cancel()
        turn.release()


def _output_of(attempt: Attempt, name: str) -> str:
    return f"the output of step {name!r} of workflow {attempt.function!r}"


def _convert_output(
    attempt: Attempt, name: str, fn: Callable[..., Any], value: Any
) -> tuple[BaseException | None, ErrorInfo | None, bytes, Any]:
    """The output as JSON bytes and as the step returns it (its JSON read back as ``fn``'s
    return type, as every replay will return it), or the non-retryable failure it becomes when
    it is not JSON, does not fit that type, or is too large (a retry would produce the same)."""
    what = _output_of(attempt, name)
    try:
        output = attempt.converter.to_json(value, what)
        value = attempt.converter.from_json(output, _declared.return_type(fn), what)
    except TypeError as error:  # ConversionError is one too
        return error, _codec.error_info(error, retryable=False), b"", None
    if len(output) > attempt.max_payload_bytes:
        message = f"{what} is {len(output)} bytes; the limit is {attempt.max_payload_bytes}"
        return None, ErrorInfo(type=ErrorType.PAYLOAD_TOO_LARGE, message=message), b"", None
    return None, None, output, value
