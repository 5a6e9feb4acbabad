"""``Context``: what a workflow uses to take durable steps, wait and emit events, with replay.

A run is re-executed from the top on every attempt. Calls the journal already holds are not made
again: ``ctx.step`` returns its recorded output (or raises its recorded error), a finished sleep
returns at once, a received signal or a finished child run returns its recorded value. So the code
between ``ctx`` calls must be deterministic (``ctx.now``, ``ctx.uuid`` and ``ctx.random`` give it
journaled values) and only the first unjournaled call does real work.

A wait (``sleep``, ``wait_for_signal``, ``run``) that cannot be answered at once *suspends* the run:
the engine journals it, the attempt ends here (the worker slot is free) and the run is dispatched
again once the wait resolves, replaying up to it.

A new step's ``StepStarted`` is held back for ``STEP_STARTED_DELAY_S``: a step that ends sooner
reports started and completed (or failed) in one report, one durable commit instead of two; a
longer one announces its start (not awaited) when the delay runs out, so an event stream still
shows a slow step as it begins. ``ctx.step`` returns only once every report of the step is
acknowledged: a result the caller has seen is durable and will never be computed again.

Cancellation reaches the workflow as :class:`~trine.CancelledError` at one journaled position (the
wait it is suspended in, the step it is running, or its next call), so a replay raises it at the
same place and the clean-up code after it replays too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random as _random
import re
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from trine_proto.trine.v1 import (
    CancelObserved,
    Command,
    Emit,
    EntryKind,
    ErrorInfo,
    JournalEntry,
    ReportAck,
    ReportOutcome,
    ReportResponse,
    Sleep,
    StartChild,
    StepCompleted,
    StepFailed,
    StepStarted,
    WaitSignal,
)

from . import _codec
from ._session import LEASE_LOST, PAYLOAD_TOO_LARGE, UNAVAILABLE, RunReporter
from .errors import (
    AttemptEnded,
    CancelledError,
    ChildRunError,
    NonDeterminismError,
    SignalTimeout,
    StepError,
)
from .retry import RetryPolicy

T = TypeVar("T")

STEP_STARTED_DELAY_S = 0.02
# Error types the engine writes into journal entries (trine_engine.state_machine).
CANCELLED = "Cancelled"
SIGNAL_TIMEOUT = "SignalTimeout"
MAX_SIGNAL_NAME = 200
SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # as trine_core.names: a URL path segment

_KIND_WORDS = {
    EntryKind.STEP: "step",
    EntryKind.SLEEP: "sleep",
    EntryKind.SIGNAL: "signal wait",
    EntryKind.CHILD: "child run",
    EntryKind.CANCEL: "cancellation",
}


def describe(kind: EntryKind, name: str) -> str:
    """How a journaled call reads in an error: ``step 'charge'``, ``sleep``."""
    word = _KIND_WORDS.get(kind, "call")
    return word if kind == EntryKind.SLEEP else f"{word} {name!r}"


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, not {value!r}")
    return seconds


def _millis(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


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
        cancel_requested: bool = False,
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
        # The report "turn": a call sends its final report only after the call before it has
        # settled, so steps run concurrently (asyncio.gather) still reach the journal in index
        # order. For sequential calls the event is always already set and costs nothing.
        self._turn = asyncio.Event()
        self._turn.set()
        # Set once the run is known to be unrecoverable; it fails even if the workflow catches it.
        self.fatal: ErrorInfo | None = None
        self._cancel_requested = cancel_requested
        self._cancel_delivered = False
        self._inner: set[asyncio.Future[Any]] = set()  # async steps running now
        self._interrupted: set[asyncio.Future[Any]] = set()  # those a cancellation stopped

    @property
    def replaying(self) -> bool:
        """True while the workflow is still re-walking calls the journal already holds."""
        return self._next_index < len(self._journal)

    @property
    def cancel_requested(self) -> bool:
        """True once this run is being cancelled (the workflow may be cleaning up)."""
        return self._cancel_requested

    def request_cancel(self) -> None:
        """The worker heard that this run is being cancelled: interrupt the async step running
        now, if any (unless the workflow already got its cancellation and is cleaning up)."""
        self._cancel_requested = True
        if self._cancel_delivered:
            return
        for task in self._inner:
            if not task.done():
                self._interrupted.add(task)
                task.cancel()

    # -- steps -----------------------------------------------------------------------------------

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Run ``fn(*args)`` once, durably: its JSON output is journaled and replayed after that.

        ``fn`` may be sync (called directly, so keep it quick) or async. When it raises, the
        engine retries the step per ``retry`` (else the function's policy): the attempt ends here
        and the run is dispatched again after the backoff. ``timeout`` (seconds) bounds each
        attempt of an async ``fn``: past it, the attempt is cancelled and fails with
        ``TimeoutError``, retried like any error. When the step fails for good, ``StepError`` is
        raised here, and may be caught.
        """
        if not name:
            raise ValueError("a step needs a name")
        limit = None if timeout is None else _seconds(timeout, "a step's timeout")
        index, entry = self._next(EntryKind.STEP, name)
        if entry is not None:
            return self._value(entry)
        await self._deliver_pending_cancel(index, name)

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
                    value = await self._run_inner(value, name, limit)
            except CancelledError as exc:
                failure = exc
                info = ErrorInfo(type=CANCELLED, message=str(exc), retryable=False)
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
            if isinstance(failure, CancelledError):
                self._cancel_delivered = True
                raise failure
            raise StepError(name, index, info.type, info.message, info.traceback) from failure
        finally:
            announce.cancel()
            mine.set()

    async def _run_inner(self, awaitable: Awaitable[Any], name: str, limit: float | None) -> Any:
        """Await an async step's work as its own task, so a timeout or a cancellation notice
        can stop it without stopping the workflow."""
        task = asyncio.ensure_future(awaitable)
        self._inner.add(task)
        try:
            try:
                done, _ = await asyncio.wait({task}, timeout=limit)
            except BaseException:
                task.cancel()  # the worker is stopping: the step stops with it
                raise
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise TimeoutError(f"step {name!r} did not finish within {limit:g}s")
            if task.cancelled() and task in self._interrupted:
                raise CancelledError(f"run {self.run_id} was cancelled during step {name!r}")
            return task.result()
        finally:
            self._inner.discard(task)
            self._interrupted.discard(task)

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

    # -- deterministic values --------------------------------------------------------------------

    async def now(self) -> datetime:
        """The current time (UTC), journaled: a replay sees the time of the first execution."""
        ms: int = await self.step("ctx.now", _codec.now_ms)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    async def uuid(self) -> _uuid.UUID:
        """A random UUID (version 4), journaled: a replay sees the same one."""
        text: str = await self.step("ctx.uuid", lambda: str(_uuid.uuid4()))
        return _uuid.UUID(text)

    async def random(self) -> float:
        """A random float in [0, 1), journaled: a replay sees the same one."""
        value: float = await self.step("ctx.random", _random.random)
        return float(value)

    # -- durable waits ---------------------------------------------------------------------------

    async def sleep(self, duration: float | timedelta) -> None:
        """Sleep ``duration`` (seconds or a timedelta) durably: the run suspends, freeing this
        worker's slot, and resumes after the engine's timer fires, even across restarts."""
        seconds = _seconds(duration, "a sleep's duration")
        [entry] = await self._waits(
            [(EntryKind.SLEEP, "sleep")],
            lambda index, _: Command(
                sleep=Sleep(index=index, duration_ms=math.ceil(seconds * 1000))
            ),
        )
        self._value(entry)

    async def sleep_until(self, when: datetime | float) -> None:
        """Sleep until ``when`` (an aware datetime, or seconds since the epoch)."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError("sleep_until needs an aware datetime (with a tzinfo)")
            seconds = when.timestamp()
        else:
            seconds = _seconds(when, "sleep_until's time")
        until = max(1, math.ceil(seconds * 1000))
        [entry] = await self._waits(
            [(EntryKind.SLEEP, "sleep")],
            lambda index, _: Command(sleep=Sleep(index=index, until_ms=until)),
        )
        self._value(entry)

    async def wait_for_signal(self, name: str, *, timeout: float | timedelta | None = None) -> Any:
        """Wait for the signal ``name`` (``POST /v1/runs/{id}/signals/{name}``) and return its
        JSON payload. A signal sent before the wait is kept and returned at once; signals of one
        name are taken oldest first. With ``timeout`` (seconds), raises ``SignalTimeout`` when
        none came in time. The run is suspended while it waits."""
        if len(name) > MAX_SIGNAL_NAME or not SIGNAL_NAME.fullmatch(name):
            raise ValueError(
                f"a signal name is 1 to {MAX_SIGNAL_NAME} ASCII letters, digits and _ . : -, "
                f"not {name!r}"
            )
        timeout_ms = 0 if timeout is None else _millis(_seconds(timeout, "a signal's timeout"))
        [entry] = await self._waits(
            [(EntryKind.SIGNAL, name)],
            lambda index, _: Command(
                wait_signal=WaitSignal(index=index, name=name, timeout_ms=timeout_ms)
            ),
        )
        return self._value(entry)

    async def run(
        self, function: str, input: Any = None, *, timeout: float | timedelta | None = None
    ) -> Any:
        """Start a child run of ``function`` with ``input`` and return its result; the parent is
        suspended while the child runs. A failed or cancelled child raises ``ChildRunError``.
        ``timeout`` (seconds) is the child's run timeout."""
        [result] = await self.run_many([(function, input)], timeout=timeout)
        return result

    async def run_many(
        self,
        calls: Iterable[tuple[str, Any]],
        *,
        timeout: float | timedelta | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Fan out: start one child run per ``(function, input)`` pair at once, wait for all of
        them, and return their results in order. The first failed child raises
        ``ChildRunError``, unless ``return_exceptions``, which puts the error in its place."""
        pairs = list(calls)
        for function, _ in pairs:
            if not function:
                raise ValueError("a child run needs a function name")
        if not pairs:
            return []
        inputs = [_codec.encode(value) for _, value in pairs]
        for position, data in enumerate(inputs):
            if len(data) > self._max_payload_bytes:
                raise ValueError(
                    f"the input of child run {position} ({pairs[position][0]!r}) is "
                    f"{len(data)} bytes; the limit is {self._max_payload_bytes}"
                )
        timeout_ms = 0 if timeout is None else _millis(_seconds(timeout, "a child's timeout"))
        entries = await self._waits(
            [(EntryKind.CHILD, function) for function, _ in pairs],
            lambda index, position: Command(
                start_child=StartChild(
                    index=index,
                    function=pairs[position][0],
                    input=inputs[position],
                    timeout_ms=timeout_ms,
                )
            ),
        )
        results: list[Any] = []
        for entry in entries:
            try:
                results.append(self._value(entry))
            except ChildRunError as error:
                if not return_exceptions:
                    raise
                results.append(error)
        return results

    async def _waits(
        self,
        calls: Sequence[tuple[EntryKind, str]],
        command: Callable[[int, int], Command],
    ) -> list[JournalEntry]:
        """The journal entries of these waits: replayed, resolved at once, or (when one must
        wait) the run suspends and this attempt ends. ``command(index, position)`` builds the
        command of a wait the journal does not hold yet."""
        kind, name = calls[0]
        first_index, first = self._next(kind, name)
        if first is None:
            await self._deliver_pending_cancel(first_index, name)
        slots = [(first_index, first)] + [self._next(k, n) for k, n in calls[1:]]
        missing = [(index, position) for position, (index, e) in enumerate(slots) if e is None]
        if not missing:
            return [e for _, e in slots if e is not None]
        previous, mine = self._turn, asyncio.Event()
        self._turn = mine
        try:
            await previous.wait()
            future = self._reporter.send(*(command(index, pos) for index, pos in missing))
            response = await self._settle(future)
        finally:
            mine.set()
        if response.outcome == ReportOutcome.SUSPENDED:
            raise AttemptEnded("suspended")
        resolved = {entry.index: entry for entry in response.resolved}
        entries: list[JournalEntry] = []
        for index, entry in slots:
            entry = entry or resolved.get(index)
            if entry is None:
                raise RunAborted(
                    ErrorInfo(
                        type="ProtocolError",
                        message=f"the engine neither suspended the run nor resolved call {index}",
                    )
                )
            entries.append(entry)
        return entries

    # -- the journal -----------------------------------------------------------------------------

    def _next(self, kind: EntryKind, name: str) -> tuple[int, JournalEntry | None]:
        """Take the next journal position for a call; its entry when the journal has it.

        Raises ``NonDeterminismError`` (and marks the run failed) when the journal recorded a
        different call there, and ``CancelledError`` where a cancellation was observed."""
        index = self._next_index
        self._next_index += 1
        if index >= len(self._journal):
            return index, None
        entry = self._journal[index]
        if entry.kind == EntryKind.CANCEL:
            self._cancel_delivered = True
            raise CancelledError(entry.error.message if entry.error else "the run was cancelled")
        if entry.kind != kind or entry.name != name:
            error = NonDeterminismError(
                index, describe(entry.kind, entry.name), describe(kind, name)
            )
            self.fatal = _codec.error_info(error, retryable=False)
            raise error
        return index, entry

    def _value(self, entry: JournalEntry) -> Any:
        """A resolved entry's value, or its error raised as the workflow should see it."""
        error = entry.error
        if error is None:
            return None if entry.kind == EntryKind.SLEEP else _codec.decode(entry.output)
        if error.type == CANCELLED:  # this run's own cancellation (a child's is ChildCancelled)
            self._cancel_delivered = True
            raise CancelledError(error.message)
        if entry.kind == EntryKind.SIGNAL and error.type == SIGNAL_TIMEOUT:
            raise SignalTimeout(entry.name, error.message)
        if entry.kind == EntryKind.CHILD:
            raise ChildRunError(
                entry.child_run_id, entry.name, error.type, error.message, error.traceback
            )
        raise StepError(entry.name, entry.index, error.type, error.message, error.traceback)

    async def _deliver_pending_cancel(self, index: int, name: str) -> None:
        """If the run is being cancelled and the workflow was not told yet, tell it here: journal
        the position (so a replay raises at the same call) and raise ``CancelledError``."""
        if not self._cancel_requested or self._cancel_delivered:
            return
        self._cancel_delivered = True
        self._next_index = index + 1
        previous, mine = self._turn, asyncio.Event()
        self._turn = mine
        try:
            await previous.wait()
            observed = CancelObserved(index=index, name=name)
            await self._settle(self._reporter.send(Command(cancel_observed=observed)))
        finally:
            mine.set()
        raise CancelledError(f"run {self.run_id} is being cancelled")

    # -- events ----------------------------------------------------------------------------------

    async def emit(self, name: str, data: Any = None) -> None:
        """Publish a custom event (``custom`` on the run's SSE stream) with JSON ``data``.

        While the workflow replays calls the journal already holds, an emit is skipped: it was
        sent by an earlier attempt. An emit after the last journaled call is sent again, so a
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
            if ack.response is not None and ack.response.cancel_requested:
                self._cancel_requested = True
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
