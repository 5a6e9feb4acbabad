"""How an attempt of a workflow ends: its result, its error (and whether that error is a
*workflow error*, which blocks the run), or an early end that reports nothing.

The worker reports the ending (``_runner``); a history's replay (``trine.testing.replay``) reads
the same ending to judge the code against the history, so both classify an exception by the same
rules, written once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trine_proto.trine.v1 import ErrorInfo
from trine_proto.vocabulary import ErrorType

from . import _codec
from .errors import (
    AttemptEnded,
    CancelledError,
    ChildRunError,
    ConversionError,
    NonDeterminismError,
    NonRetryableError,
    RunAborted,
    SignalTimeout,
    StepError,
)

if TYPE_CHECKING:
    from ._runner import FunctionDef
    from .context import Context

# A journaled call's final outcome propagating out of the workflow: the run ends as its journal
# says, on any code. SignalTimeout counts as one (a wait's journaled end, like a child's).
_JOURNALED_OUTCOMES = (StepError, ChildRunError, SignalTimeout)


@dataclass(slots=True)
class Ending:
    """One attempt's end. ``ended`` (why) when it ended early and reports nothing; else
    ``error`` when the run failed (``workflow_error``: by the workflow's own code, see
    ``is_workflow_error``), else ``result`` (its JSON) and ``value``. ``exception`` is what
    raised, for a replay to show."""

    ended: str | None = None
    result: bytes = b""
    value: Any = None
    error: ErrorInfo | None = None
    workflow_error: bool = False
    exception: BaseException | None = None


def is_workflow_error(exc: BaseException) -> bool:
    """A *workflow error* (docs/versioning.md): a non-determinism, or an exception the
    workflow's code raised that is neither a journaled call's final error propagating (a step's,
    a child's, a signal wait's timeout) nor a deliberate failure (``NonRetryableError``) nor the
    run's cancellation. Fixed code can get past it, so it blocks the run (by default) instead
    of failing it."""
    if isinstance(exc, NonDeterminismError):
        return True
    return isinstance(exc, Exception) and not isinstance(
        exc, (*_JOURNALED_OUTCOMES, NonRetryableError, CancelledError)
    )


async def run_workflow(
    definition: FunctionDef, run_input: bytes, ctx: Context, *, max_payload_bytes: int
) -> Ending:
    """Call the workflow with ``run_input`` (the run's JSON input) and say how it ended."""
    try:
        try:
            payload = ctx.converter.from_json(
                run_input, definition.input_type, f"the input of workflow {definition.name!r}"
            )
        except (ConversionError, ValueError) as exc:
            raise RunAborted(_codec.error_info(exc, retryable=False)) from exc
        value = await definition.fn(ctx, payload)
    except AttemptEnded as ended:
        return Ending(ended=ended.reason, exception=ended)
    except RunAborted as aborted:
        return Ending(error=aborted.info, exception=aborted)
    except Exception as exc:  # trine.CancelledError included
        return _raised(ctx, exc)
    if ctx._state.fatal_error is not None:  # the workflow caught a non-determinism, returned
        return _non_determinism(ctx._state.fatal_error)
    what = f"the result of workflow {definition.name!r}"
    try:
        result = ctx.converter.to_json(value, what)
    except TypeError as exc:
        return Ending(error=_codec.error_info(exc, retryable=False), exception=exc)
    if len(result) > max_payload_bytes:
        message = f"{what} is {len(result)} bytes; the limit is {max_payload_bytes}"
        return Ending(error=ErrorInfo(type=ErrorType.PAYLOAD_TOO_LARGE, message=message))
    return Ending(result=result, value=value)


def _raised(ctx: Context, exc: Exception) -> Ending:
    """The workflow raised ``exc``. A non-determinism the attempt met wins over whatever the
    workflow did with it."""
    if ctx._state.fatal_error is not None:
        return _non_determinism(ctx._state.fatal_error)
    if isinstance(exc, CancelledError):
        # Not caught, or raised again after cleaning up: the run ends cancelled.
        info = ErrorInfo(type=ErrorType.CANCELLED, message=str(exc), retryable=False)
    else:
        info = _codec.error_info(exc)
    return Ending(error=info, workflow_error=is_workflow_error(exc), exception=exc)


def _non_determinism(error: NonDeterminismError) -> Ending:
    # Described now, not when it was raised: its traceback has grown up to the workflow's own
    # frame (where it made the call, or caught the error) since.
    info = _codec.error_info(error, retryable=False)
    return Ending(error=info, workflow_error=True, exception=error)
