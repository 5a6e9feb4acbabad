"""The exceptions a workflow author or a client sees.

Workflow code catches these by class, so each one says what went wrong at the level the author
thinks in (a step, a run), not at the level of the wire. The internal control-flow signals that
end an attempt or a run derive from ``BaseException`` so that a user's ``except Exception``
cannot swallow them and go on with a run the engine has already moved past.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trine_proto.trine.v1 import ErrorInfo


class TrineError(Exception):
    """Base of the SDK's public exceptions, so callers can catch them all at once."""


class NonRetryableError(TrineError):
    """Raise from a step to fail it at once, without the retries its policy allows.

    Use it for errors that no retry can fix (bad input, a refused card): retrying them only
    delays the failure.
    """


class ConversionError(NonRetryableError, TypeError):
    """A JSON value does not fit the type the code declared for it: a workflow's input, a step's
    or a child's result (its return annotation), a signal's payload, a run's result.

    ``what`` names the value ("the input of workflow 'order'"), ``type`` the declared type and
    ``problems`` what did not fit. Non-retryable: the same value would fail again. In a workflow
    it fails the run (a step output that no longer fits its annotation usually means the code
    changed under a run in flight).
    """

    def __init__(self, what: str, type: str, problems: str) -> None:
        super().__init__(f"{what} is not a valid {type}: {problems}")
        self.what = what
        self.type = type
        self.problems = problems


class StepError(TrineError):
    """A step failed for good: its attempts are exhausted or its error was non-retryable.

    Raised inside the workflow at the ``ctx.step`` call, both the first time and on every replay
    (the error is journaled), so a workflow that catches it behaves the same way each time.
    """

    def __init__(
        self,
        step: str,
        index: int,
        type: str,
        message: str,
        traceback: str = "",
    ) -> None:
        super().__init__(f"step {index} ({step!r}) failed: {type}: {message}")
        self.step = step
        self.index = index
        self.type = type
        self.message = message
        self.traceback = traceback


class NonDeterminismError(TrineError):
    """The workflow asked for something other than what the journal recorded at that position.

    Replay relies on a workflow making the same ``ctx`` calls (steps, sleeps, signal waits, child
    runs, events, patches) in the same order every time; when it does not, the journal cannot be
    trusted for this run. The code changed under a run in flight (make such a change safe with
    ``ctx.patched``: docs/versioning.md), or the workflow branches on something that is not
    journaled. Under ``on_workflow_error="block"`` (the default) the run is blocked until fixed
    code retries it; under ``"fail"`` it fails.

    ``index`` is the journal position, ``expected`` the call the journal recorded there and
    ``got`` the call the code made, e.g. ``step 'charge'`` and ``sleep``; ``hint`` says how to
    make the change safe. The message says all of it.
    """

    def __init__(self, index: int, expected: str, got: str, hint: str = "") -> None:
        message = (
            f"non-deterministic workflow: at journal position {index} this execution calls "
            f"{got}, but the journal recorded {expected} there"
        )
        super().__init__(f"{message}. {hint}" if hint else message)
        self.index = index
        self.expected = expected
        self.got = got
        self.hint = hint


class CancelledError(TrineError):
    """The run is being cancelled (``POST /v1/runs/{id}/cancel``, or its parent's cancellation).

    Raised at the workflow's ``ctx`` call where it learns of it: the wait it is suspended in, the
    step it is running (an async step is cancelled), or its next call. Catch it to clean up (with
    more steps, within the runtime's grace period); the run then ends ``cancelled`` if the
    workflow raises, ``completed`` if it returns. Not ``asyncio.CancelledError``: that one means
    this worker is stopping, not that the run was cancelled.
    """


class SignalTimeout(TrineError, TimeoutError):
    """``ctx.wait_for_signal`` waited its ``timeout`` and the signal did not come."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ChildRunError(TrineError):
    """A child run started with ``ctx.run`` or ``ctx.run_many`` failed or was cancelled.

    ``type`` and ``message`` are the child's final error (``UnknownFunction`` when no worker
    registered its function); ``child_run_id`` names it for the API.
    """

    def __init__(
        self, child_run_id: str, function: str, type: str, message: str, traceback: str = ""
    ) -> None:
        where = f"child run {child_run_id} " if child_run_id else "child run "
        super().__init__(f"{where}({function!r}) failed: {type}: {message}")
        self.child_run_id = child_run_id
        self.function = function
        self.type = type
        self.message = message
        self.traceback = traceback


class RunFailedError(TrineError):
    """A run awaited through ``trine.Client`` ended failed or cancelled.

    ``error`` is the run's error object from the gateway (``type``, ``message``, ``traceback``),
    ``run`` the whole run.
    """

    def __init__(self, run: dict[str, Any]) -> None:
        error = run.get("error") or {}
        self.run = run
        self.run_id: str = str(run.get("id", ""))
        self.status: str = str(run.get("status", ""))
        self.error: dict[str, Any] = error
        self.type: str = str(error.get("type", ""))
        self.message: str = str(error.get("message", ""))
        super().__init__(f"run {self.run_id} {self.status}: {self.type}: {self.message}")


class ClientError(TrineError):
    """The gateway refused a request; ``code`` is its stable error code (e.g. ``run_not_found``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class AttemptEnded(BaseException):
    """Internal: this attempt of the run is over (retry scheduled, lease lost, worker leaving).

    It unwinds the workflow from the ``ctx`` call that learned it; nothing more is reported.
    A ``BaseException`` so that user code catching ``Exception`` lets it through.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunAborted(BaseException):
    """Internal: the run cannot go on and must fail with ``info`` (e.g. a report was refused).

    A ``BaseException`` for the same reason as ``AttemptEnded``: the workflow must not catch it.
    """

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.type}: {info.message}")
        self.info = info
