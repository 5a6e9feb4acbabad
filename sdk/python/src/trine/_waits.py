"""Durable waits: sleeps, signal waits and child runs.

A wait the engine cannot answer at once *suspends* the run: the engine journals it, the attempt
ends here (``AttemptEnded``, so the worker slot is free) and the run is dispatched again once the
wait resolves, replaying up to it. So a wait either returns a journaled entry's value or never
returns in this attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from trine_proto.trine.v1 import (
    Command,
    EntryKind,
    ErrorInfo,
    JournalEntry,
    ReportOutcome,
    Sleep,
    StartChild,
    WaitSignal,
)
from trine_proto.vocabulary import ErrorType, seconds_to_ms, signal_name_problem, timeout_to_ms

from . import _durations, _tracing
from ._attempt import Attempt
from ._declared import return_type, workflow_name
from .errors import AttemptEnded, ChildRunError, RunAborted


def _timeout_ms(limit: float | timedelta | None, what: str) -> int:
    """A wait's timeout on the wire: 0 for none, else at least 1 ms (0 would mean none)."""
    if limit is None:
        return 0
    return timeout_to_ms(_durations.span(limit, what))


async def sleep(attempt: Attempt, duration: float | timedelta) -> None:
    seconds = _durations.span(duration, "a sleep's duration")
    [entry] = await resolve(
        attempt,
        [(EntryKind.SLEEP, "sleep")],
        lambda index, _: Command(sleep=Sleep(index=index, duration_ms=seconds_to_ms(seconds))),
    )
    attempt.value(entry)


async def sleep_until(attempt: Attempt, when: datetime | float) -> None:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("sleep_until needs an aware datetime (with a tzinfo)")
        seconds = when.timestamp()
    else:
        seconds = _durations.seconds(when, "sleep_until's time")
    until = timeout_to_ms(seconds)
    [entry] = await resolve(
        attempt,
        [(EntryKind.SLEEP, "sleep")],
        lambda index, _: Command(sleep=Sleep(index=index, until_ms=until)),
    )
    attempt.value(entry)


async def wait_for_signal(
    attempt: Attempt, name: str, limit: float | timedelta | None, payload_type: Any = None
) -> Any:
    problem = signal_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    timeout_ms = _timeout_ms(limit, "a signal's timeout")
    [entry] = await resolve(
        attempt,
        [(EntryKind.SIGNAL, name)],
        lambda index, _: Command(
            wait_signal=WaitSignal(index=index, name=name, timeout_ms=timeout_ms)
        ),
    )
    return attempt.value(
        entry, payload_type, f"the payload of signal {name!r} in workflow {attempt.function!r}"
    )


async def run_many(
    attempt: Attempt,
    calls: Iterable[tuple[str | Callable[..., Any], Any]],
    limit: float | timedelta | None,
    return_exceptions: bool,
) -> list[Any]:
    handles = [(workflow_name(function), function, value) for function, value in calls]
    pairs = [(name, value) for name, _, value in handles]
    if not pairs:
        return []
    inputs = [
        attempt.converter.to_json(value, f"the input of child run {position} ({function!r})")
        for position, (function, value) in enumerate(pairs)
    ]
    for position, data in enumerate(inputs):
        if len(data) > attempt.max_payload_bytes:
            raise ValueError(
                f"the input of child run {position} ({pairs[position][0]!r}) is "
                f"{len(data)} bytes; the limit is {attempt.max_payload_bytes}"
            )
    timeout_ms = _timeout_ms(limit, "a child's timeout")
    trace_context = _tracing.current_context()  # the children join this run's trace, under here
    entries = await resolve(
        attempt,
        [(EntryKind.CHILD, function) for function, _ in pairs],
        lambda index, position: Command(
            start_child=StartChild(
                index=index,
                function=pairs[position][0],
                input=inputs[position],
                timeout_ms=timeout_ms,
                trace_context=trace_context,
            )
        ),
    )
    results: list[Any] = []
    for entry, (name, function, _) in zip(entries, handles, strict=True):
        result_type = None if isinstance(function, str) else return_type(function)
        try:
            results.append(
                attempt.value(
                    entry,
                    result_type,
                    f"the result of child {name!r} of workflow {attempt.function!r}",
                )
            )
        except ChildRunError as error:
            if not return_exceptions:
                raise
            results.append(error)
    return results


async def resolve(
    attempt: Attempt,
    calls: Sequence[tuple[EntryKind, str]],
    command: Callable[[int, int], Command],
) -> list[JournalEntry]:
    """The journal entries of these waits: replayed, resolved at once, or (when one must wait)
    the run suspends and this attempt ends. ``command(index, position)`` builds the command of a
    wait the journal does not hold yet; all of them go in one report, so a fan-out costs one
    durable commit."""
    kind, name = calls[0]
    first_index, first = attempt.next(kind, name)
    if first is None:
        await attempt.deliver_pending_cancel(first_index, name)
    slots = [(first_index, first)] + [attempt.next(k, n) for k, n in calls[1:]]
    missing = [(index, position) for position, (index, e) in enumerate(slots) if e is None]
    if not missing:
        return [e for _, e in slots if e is not None]
    turn = attempt.claim_turn()
    try:
        await turn.wait()
        future = attempt.send(*(command(index, pos) for index, pos in missing), index=missing[0][0])
        for index, pos in missing:
            kind, name = calls[pos]
            _tracing.wait_event(kind.name.lower(), name, index)
        response = await attempt.settle(future)
    finally:
        turn.release()
    if response.outcome == ReportOutcome.SUSPENDED:
        raise AttemptEnded("suspended")
    resolved = {entry.index: entry for entry in response.resolved}
    entries: list[JournalEntry] = []
    for index, entry in slots:
        entry = entry or resolved.get(index)
        if entry is None:
            raise RunAborted(
                ErrorInfo(
                    type=ErrorType.PROTOCOL_ERROR,
                    message=f"the engine neither suspended the run nor resolved call {index}",
                )
            )
        entries.append(entry)
    return entries
