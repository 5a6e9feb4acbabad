"""``Context``: what a workflow uses to take durable steps, wait and emit events, with replay.

A run is re-executed from the top on every attempt. Calls the journal already holds are not made
again: ``ctx.step`` returns its recorded output (or raises its recorded error), a finished sleep
returns at once, a received signal or a finished child run returns its recorded value. So the code
between ``ctx`` calls must be deterministic (``ctx.now``, ``ctx.uuid`` and ``ctx.random`` give it
journaled values) and only the first unjournaled call does real work.

A wait (``sleep``, ``wait_for_signal``, ``run``) that cannot be answered at once *suspends* the run:
the engine journals it, the attempt ends here (the worker slot is free) and the run is dispatched
again once the wait resolves, replaying up to it.

``ctx.step`` returns only once every report of the step is acknowledged: a result the caller
has seen is durable and will never be computed again.

Cancellation reaches the workflow as :class:`~trine.CancelledError` at one journaled position (the
wait it is suspended in, the step it is running, or its next call), so a replay raises it at the
same place and the clean-up code after it replays too.

Changing a workflow under runs in flight is safe behind ``ctx.patched("change-id")``, which
journals which path each run took (docs/versioning.md).

This module is the workflow's view only; the machinery is in ``_steps`` (steps), ``_waits``
(durable waits), ``_emit`` (events), ``_journal`` (the replay cursor, patches included),
``_attempt`` (what the calls of an attempt share: report order, patch markers, cancellation,
acks) and ``_acks`` (what a refused report means).
"""

from __future__ import annotations

import logging
import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, TypeVarTuple, overload

from trine_proto.trine.v1 import ErrorInfo, JournalEntry

from . import _codec, _emit, _steps, _waits
from ._attempt import Attempt
from ._journal import Journal
from ._session import RunReporter
from .converter import Converter
from .retry import RetryPolicy

T = TypeVar("T")
InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")
Ts = TypeVarTuple("Ts")


class _RunLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the function and run id, so interleaved runs can be told apart,
    and puts them (and the attempt) on the record as attributes too (``record.run_id``...), for
    handlers that render key-values (structlog's ``ProcessorFormatter``, a JSON formatter).
    A call's own ``extra=`` is kept, merged over them.

    With ``replaying``, lines are dropped while it returns True: the workflow's own lines
    (``ctx.log``) are not written again while a new attempt re-walks what an earlier one ran.
    """

    def __init__(
        self,
        logger: logging.Logger,
        extra: dict[str, Any],
        replaying: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(logger, extra)
        self._replaying = replaying

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra.get('function')} {extra.get('run_id')}] {msg}", kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self._replaying is not None and self._replaying():
            return
        super().log(level, msg, *args, **kwargs)


class Context:
    """The handle a workflow function receives as its first argument, one per attempt of a run.

    Attributes: ``run_id``, ``function`` (the registered name), ``attempt`` (this run's dispatch
    number, from 1) and ``log`` (a stdlib logger adapter that tags lines with the run, and writes
    nothing while the workflow is ``replaying``: a line is not repeated by every later attempt).
    """

    def __init__(
        self,
        *,
        run_id: str,
        function: str,
        attempt: int,
        journal: list[JournalEntry] | Journal,
        step_attempts: dict[int, int],
        reporter: RunReporter,
        max_payload_bytes: int,
        logger: logging.Logger,
        cancel_requested: bool = False,
        executor: Executor | None = None,
        converter: Converter | None = None,
    ) -> None:
        self.run_id = run_id
        self.function = function
        self.attempt = attempt
        tags = {"run_id": run_id, "function": function, "attempt": attempt}
        # The SDK's own lines about the run (a step's retry, the run's end...): never dropped.
        runtime_log: logging.LoggerAdapter[logging.Logger] = _RunLogAdapter(logger, tags)
        self._runtime_log = runtime_log
        # A cursor given as is: a history's replay (``trine.testing.replay``) brings its own.
        journal_cursor = (
            journal if isinstance(journal, Journal) else Journal(journal, step_attempts)
        )
        # The workflow's lines: dropped while replaying (they were written by the attempt that
        # first ran that code).
        self.log: logging.LoggerAdapter[logging.Logger] = _RunLogAdapter(
            logger, tags, lambda: journal_cursor.replaying
        )
        # Everything the machinery of steps and waits shares for this attempt (``_attempt``).
        self._state = Attempt(
            run_id=run_id,
            function=function,
            journal=journal_cursor,
            reporter=reporter,
            max_payload_bytes=max_payload_bytes,
            log=runtime_log,
            cancel_requested=cancel_requested,
            executor=executor,
            converter=converter,
        )

    @property
    def converter(self) -> Converter:
        """How this run's payloads become JSON and come back as their declared types."""
        return self._state.converter

    @property
    def replaying(self) -> bool:
        """True while the workflow is still re-walking calls the journal already holds."""
        return self._state.journal.replaying

    @property
    def cancel_requested(self) -> bool:
        """True once this run is being cancelled (the workflow may be cleaning up)."""
        return self._state.cancel_requested

    @property
    def fatal(self) -> ErrorInfo | None:
        """Set once the run is known to be unrecoverable: it fails with this even if the
        workflow caught the error and returned."""
        return self._state.fatal

    def request_cancel(self) -> None:
        """The worker heard that this run is being cancelled: interrupt the async step running
        now, if any (unless the workflow already got its cancellation and is cleaning up)."""
        self._state.request_cancel()

    # -- steps -----------------------------------------------------------------------------------

    # ``*args: *Ts`` lets mypy check the arguments against ``fn``'s parameters.

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[[*Ts], T],
        *args: *Ts,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[[*Ts], Any],
        *args: *Ts,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Run ``fn(*args)`` once, durably: its JSON output is journaled and replayed after that.

        ``fn`` may be async (awaited on the worker's event loop, so it must not block) or sync
        (run in one of the worker's step threads, ``Worker(step_threads=...)``, so it may block:
        heartbeats and other runs go on meanwhile; an awaitable it returns is awaited on the
        loop). When it raises, the engine retries the step per ``retry`` (else the function's
        policy): the attempt ends here and the run is dispatched again after the backoff.
        ``timeout`` (seconds) bounds each attempt: an async ``fn`` past it is cancelled and
        fails with ``TimeoutError``, retried like any error; a sync ``fn`` cannot be
        interrupted, so it fails with ``TimeoutError`` once it returns late, its result
        discarded. When the step fails for good, ``StepError`` is raised here, and may be
        caught.

        The output is converted by the worker's converter: JSON values, pydantic models,
        dataclasses, TypedDicts... When ``fn`` annotates its return type, the step returns a
        value of that type, the first time and on every replay (the output is validated against
        it before it is journaled); without one it returns plain JSON values. A step returning
        a coroutine, a generator, anything that cannot become JSON or that does not fit its
        return annotation fails at once (not retried), with an error naming it.
        """
        return await _steps.step(self._state, name, fn, args, retry=retry, limit=timeout)

    # -- deterministic values --------------------------------------------------------------------

    # These three are steps whose bodies are sync but take microseconds and never block, so they
    # run inline on the loop: a hop to a step thread and back would cost more than the work.

    async def now(self) -> datetime:
        """The current time (UTC), journaled: a replay sees the time of the first execution."""
        ms: int = await self._inline("ctx.now", _codec.now_ms)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    async def uuid(self) -> _uuid.UUID:
        """A random UUID (version 4), journaled: a replay sees the same one."""
        text: str = await self._inline("ctx.uuid", lambda: str(_uuid.uuid4()))
        return _uuid.UUID(text)

    async def random(self) -> float:
        """A random float in [0, 1), journaled: a replay sees the same one."""
        value: float = await self._inline("ctx.random", _random.random)
        return float(value)

    async def _inline(self, name: str, fn: Callable[[], Any]) -> Any:
        return await _steps.step(self._state, name, fn, (), retry=None, limit=None, inline=True)

    # -- durable waits ---------------------------------------------------------------------------

    async def sleep(self, duration: float | timedelta) -> None:
        """Sleep ``duration`` (seconds or a timedelta) durably: the run suspends, freeing this
        worker's slot, and resumes after the engine's timer fires, even across restarts."""
        await _waits.sleep(self._state, duration)

    async def sleep_until(self, when: datetime | float) -> None:
        """Sleep until ``when`` (an aware datetime, or seconds since the epoch)."""
        await _waits.sleep_until(self._state, when)

    @overload
    async def wait_for_signal(
        self, name: str, payload_type: type[T], *, timeout: float | timedelta | None = None
    ) -> T: ...

    @overload
    async def wait_for_signal(
        self, name: str, payload_type: None = None, *, timeout: float | timedelta | None = None
    ) -> Any: ...

    async def wait_for_signal(
        self, name: str, payload_type: Any = None, *, timeout: float | timedelta | None = None
    ) -> Any:
        """Wait for the signal ``name`` (``POST /v1/runs/{id}/signals/{name}``) and return its
        payload: as a ``payload_type`` (a pydantic model, a dataclass...) when given, else as
        plain JSON. A signal sent before the wait is kept and returned at once; signals of one
        name are taken oldest first. With ``timeout`` (seconds), raises ``SignalTimeout`` when
        none came in time. The run is suspended while it waits. A payload that does not fit
        ``payload_type`` raises ``ConversionError``."""
        return await _waits.wait_for_signal(self._state, name, timeout, payload_type)

    @overload
    async def run(
        self,
        function: Callable[[Any, InputT], Awaitable[OutputT]],
        input: InputT,
        *,
        timeout: float | timedelta | None = None,
    ) -> OutputT: ...

    @overload
    async def run(
        self, function: str, input: Any = None, *, timeout: float | timedelta | None = None
    ) -> Any: ...

    async def run(
        self,
        function: str | Callable[..., Awaitable[Any]],
        input: Any = None,
        *,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Start a child run of ``function`` with ``input`` and return its result; the parent is
        suspended while the child runs. A failed or cancelled child raises ``ChildRunError``.
        ``timeout`` (seconds) is the child's run timeout.

        ``function`` is a workflow function (typed: mypy checks ``input`` against its input
        parameter, and its result comes back as its return annotation) or a registered name
        (untyped: plain JSON back). The child may run on any worker serving it."""
        [result] = await self.run_many([(function, input)], timeout=timeout)
        return result

    async def run_many(
        self,
        calls: Iterable[tuple[str | Callable[..., Awaitable[Any]], Any]],
        *,
        timeout: float | timedelta | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Fan out: start one child run per ``(function, input)`` pair at once, wait for all of
        them, and return their results in order (``function`` as for ``run``). The first failed
        child raises ``ChildRunError``, unless ``return_exceptions``, which puts the error in
        its place."""
        return await _waits.run_many(self._state, calls, timeout, return_exceptions)

    # -- changing the code under runs in flight ---------------------------------------------------

    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new path of the change ``change_id`` (docs/versioning.md)::

            if ctx.patched("send-receipt"):
                await ctx.step("send_receipt", send_receipt, order)

        A run reaching this point for the first time takes the new path (True) and journals a
        marker here (sent with its next report), so its replays take it too. A run whose journal
        already holds this position took the old path unless the marker is there: False, and
        nothing of its journal is consumed, so the old code after it replays as it ran. A
        finished run's history replayed (``trine.testing.replay``) takes the old path past its
        journal.

        ``change_id`` follows the signal-name rule (1 to 200 characters of letters, digits and
        ``_ . : -``): anything else raises ``ValueError``.
        """
        return self._state.patched(change_id)

    def deprecate_patch(self, change_id: str) -> None:
        """The clean-up phase of a change, once no run takes its old path: replace
        ``if ctx.patched(id):`` by ``ctx.deprecate_patch(id)`` and the new code unguarded. Runs
        whose journal has the marker here step over it; nothing is journaled otherwise. Remove
        the call once no open run holds the marker."""
        self._state.deprecate_patch(change_id)

    # -- events ----------------------------------------------------------------------------------

    async def emit(self, name: str, data: Any = None) -> None:
        """Publish a custom event (``custom`` on the run's SSE stream) with JSON ``data``, once.

        The event is journaled at its position, like a step, and published in the same commit;
        this returns once it is durable. It is published exactly once per run: a later attempt
        (after a step's retry, a wait, a crash) re-walks the emit and skips it. An emit where the
        journal recorded another call is a ``NonDeterminismError``, as for a step.
        """
        await _emit.emit(self._state, name, data)
