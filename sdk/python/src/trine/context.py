"""``Context``: what a workflow uses to take durable steps and emit events, with replay.

A run is re-executed from the top on every attempt. Steps the journal already holds are not run
again: ``ctx.step`` returns their recorded output (or raises their recorded error), so the code
between steps must be deterministic and only the first unjournaled step does real work.

A new step's ``StepStarted`` is held back for ``STEP_STARTED_DELAY_S``: a step that ends sooner
reports started and completed (or failed) in one report, one durable commit instead of two; a
longer one announces its start (not awaited) when the delay runs out, so an event stream still
shows a slow step as it begins. ``ctx.step`` returns only once every report of the step is
acknowledged: a result the caller has seen is durable and will never be computed again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar, overload

from trine_proto.trine.v1 import (
    Command,
    Emit,
    ErrorInfo,
    JournalEntry,
    ReportAck,
    ReportOutcome,
    ReportResponse,
    StepCompleted,
    StepFailed,
    StepStarted,
)

from . import _codec
from ._session import LEASE_LOST, PAYLOAD_TOO_LARGE, UNAVAILABLE, RunReporter
from .errors import AttemptEnded, NonDeterminismError, StepError
from .retry import RetryPolicy

T = TypeVar("T")

STEP_STARTED_DELAY_S = 0.02


class RunAborted(BaseException):
    """Internal: the run cannot go on and must fail with ``info`` (e.g. a report was refused).

    A ``BaseException`` for the same reason as ``AttemptEnded``: the workflow must not catch it.
    """

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.type}: {info.message}")
        self.info = info


class _RunLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the function and run id, so interleaved runs can be told apart."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[{extra.get('function')} {extra.get('run_id')}] {msg}", kwargs


class Context:
    """The handle a workflow function receives as its first argument, one per attempt of a run.

    Attributes: ``run_id``, ``function`` (the registered name), ``attempt`` (this run's dispatch
    number, from 1) and ``log`` (a stdlib logger adapter that tags lines with the run).
    """

    def __init__(
        self,
        *,
        run_id: str,
        function: str,
        attempt: int,
        journal: list[JournalEntry],
        step_attempts: dict[int, int],
        reporter: RunReporter,
        max_payload_bytes: int,
        logger: logging.Logger,
    ) -> None:
        self.run_id = run_id
        self.function = function
        self.attempt = attempt
        self.log: logging.LoggerAdapter[logging.Logger] = _RunLogAdapter(
            logger, {"run_id": run_id, "function": function}
        )
        self._journal = journal
        self._step_attempts = step_attempts
        self._reporter = reporter
        self._max_payload_bytes = max_payload_bytes
        self._next_index = 0
        # The report "turn": a step sends its final report only after the step before it has
        # settled, so steps run concurrently (asyncio.gather) still reach the journal in index
        # order. For sequential steps the event is always already set and costs nothing.
        self._turn = asyncio.Event()
        self._turn.set()
        # Set once the run is known to be unrecoverable; it fails even if the workflow catches it.
        self.fatal: ErrorInfo | None = None

    @property
    def replaying(self) -> bool:
        """True while the workflow is still re-walking steps the journal already holds."""
        return self._next_index < len(self._journal)

    # -- steps -----------------------------------------------------------------------------------

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: RetryPolicy | None = None,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Run ``fn(*args)`` once, durably: its JSON output is journaled and replayed after that.

        ``fn`` may be sync (called directly, so keep it quick) or async. When it raises, the
        engine retries the step per ``retry`` (else the function's policy): the attempt ends here
        and the run is dispatched again after the backoff. When the step fails for good,
        ``StepError`` is raised here, and may be caught.
        """
        if not name:
            raise ValueError("a step needs a name")
        index = self._next_index
        self._next_index += 1
        if index < len(self._journal):
            return self._replay(index, name)

        attempt = self._step_attempts.get(index, 0) + 1
        input_digest = _codec.digest(args)
        previous, mine = self._turn, asyncio.Event()
        self._turn = mine
        started_cmd = Command(step_started=StepStarted(index=index, name=name, attempt=attempt))
        started: list[asyncio.Future[ReportAck]] = []
        announce = asyncio.get_running_loop().call_later(
            STEP_STARTED_DELAY_S, lambda: started.append(self._reporter.send(started_cmd))
        )
        try:
            started_at = _codec.now_ms()
            failure: BaseException | None = None
            info: ErrorInfo | None = None
            output = b""
            try:
                value = fn(*args)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                failure, info = exc, _codec.error_info(exc)
            else:
                failure, info, output = self._encode_output(name, value)
            announce.cancel()
            unannounced = [] if started else [started_cmd]
            await previous.wait()

            if info is None:
                completed = self._reporter.send(
                    *unannounced,
                    Command(
                        step_completed=StepCompleted(
                            entry=JournalEntry(
                                index=index,
                                name=name,
                                input_digest=input_digest,
                                output=output,
                                attempt=attempt,
                                started_at_ms=started_at,
                                ended_at_ms=_codec.now_ms(),
                            )
                        )
                    ),
                )
                for future in started:
                    await self._settle(future)
                ack = await completed
                if ack.error_code != PAYLOAD_TOO_LARGE:
                    self._check(ack)
                    return _codec.decode(output)
                # The engine's limit is lower than ours: the same non-retryable failure.
                info = ErrorInfo(type="PayloadTooLarge", message=ack.error_message)

            failed = self._reporter.send(
                *unannounced,
                Command(
                    step_failed=StepFailed(
                        index=index,
                        name=name,
                        attempt=attempt,
                        error=info,
                        retry=retry.to_proto() if retry is not None else None,
                        started_at_ms=started_at,
                        input_digest=input_digest,
                    )
                ),
            )
            for future in started:
                await self._settle(future)
            outcome = (await self._settle(failed)).outcome
            if outcome == ReportOutcome.RETRY_SCHEDULED:
                self.log.info(
                    "step %d (%r) attempt %d failed (%s: %s); retry scheduled",
                    index,
                    name,
                    attempt,
                    info.type,
                    info.message,
                )
                raise AttemptEnded("retry scheduled")
            raise StepError(name, index, info.type, info.message, info.traceback) from failure
        finally:
            announce.cancel()
            mine.set()

    def _replay(self, index: int, name: str) -> Any:
        entry = self._journal[index]
        if entry.name != name:
            error = NonDeterminismError(index, entry.name, name)
            self.fatal = _codec.error_info(error, retryable=False)
            raise error
        if entry.error is not None:
            raise StepError(
                name, index, entry.error.type, entry.error.message, entry.error.traceback
            )
        return _codec.decode(entry.output)

    def _encode_output(
        self, name: str, value: Any
    ) -> tuple[BaseException | None, ErrorInfo | None, bytes]:
        """The output as JSON bytes, or the non-retryable failure it becomes when it is not JSON
        or too large (retrying would produce the same output again)."""
        try:
            output = _codec.encode(value)
        except (TypeError, ValueError) as exc:
            error = TypeError(f"the output of step {name!r} is not JSON-serializable: {exc}")
            error.__cause__ = exc
            return error, _codec.error_info(error, retryable=False), b""
        if len(output) > self._max_payload_bytes:
            message = (
                f"the output of step {name!r} is {len(output)} bytes; "
                f"the limit is {self._max_payload_bytes}"
            )
            return None, ErrorInfo(type="PayloadTooLarge", message=message), b""
        return None, None, output

    # -- events ----------------------------------------------------------------------------------

    async def emit(self, name: str, data: Any = None) -> None:
        """Publish a custom event (``custom`` on the run's SSE stream) with JSON ``data``.

        While the workflow replays steps the journal already holds, an emit is skipped: it was
        sent by an earlier attempt. An emit after the last journaled step is sent again, so a
        consumer should tolerate the rare duplicate after a crash.
        """
        if not name:
            raise ValueError("an event needs a name")
        data_bytes = _codec.encode(data)
        if self.replaying:
            return
        if len(data_bytes) > self._max_payload_bytes:
            raise ValueError(
                f"event {name!r} data is {len(data_bytes)} bytes; "
                f"the limit is {self._max_payload_bytes}"
            )
        await self._settle(self._reporter.send(Command(emit=Emit(name=name, data=data_bytes))))

    # -- acks ------------------------------------------------------------------------------------

    async def _settle(self, future: asyncio.Future[ReportAck]) -> ReportResponse:
        """Await one ack and act on a refusal; the response otherwise."""
        ack = await future
        self._check(ack)
        return ack.response or ReportResponse()

    def _check(self, ack: ReportAck) -> None:
        if not ack.error_code:
            return
        if ack.error_code == LEASE_LOST:
            # Another attempt owns the run now (or it was cancelled): nothing of ours counts.
            self.log.info("lease lost; this attempt ends (%s)", ack.error_message)
            raise AttemptEnded("lease lost")
        if ack.error_code == UNAVAILABLE:
            # The engine may come back; failing the run would be wrong. Start the stream over:
            # that releases this run's lease, and the run is dispatched again and replays.
            self.log.warning("the engine is unavailable (%s); reconnecting", ack.error_message)
            self._reporter.session.abort(f"engine unavailable: {ack.error_message}")
            raise AttemptEnded("engine unavailable")
        raise RunAborted(
            ErrorInfo(
                type="ReportRefused",
                message=f"the engine refused a report: {ack.error_code}: {ack.error_message}",
                retryable=False,
            )
        )
