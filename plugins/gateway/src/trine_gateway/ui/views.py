"""What the console's pages show, built from the contract's messages: plain data for the templates.

The run page's timeline joins two sources. The journal has one entry per finished step and per
wait (with its final attempt, its times, its output or error), but nothing of the attempts that
failed and were retried, nor of a step still running; the run's events have each attempt
(``step.started``, ``step.failed`` with ``retry_at_ms``, ``step.completed``), each wait as it
starts and ends, and signals. So the events give the attempts and what is in progress, and the
journal, where it has an entry, has the last word.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trine_gateway.serialization import entry_kind_name, status_name
from trine_proto.trine.v1 import (
    EntryKind,
    ErrorInfo,
    Event,
    JournalEntry,
    KeptSignals,
    Run,
    RunStatus,
)
from trine_proto.vocabulary import ErrorType, EventType, is_final

MAX_SHOWN_BYTES = 64 * 1024
"""A payload (input, output, result, event data) longer than this is shown cut, with its size."""


def when(ms: int | None) -> str:
    """Milliseconds since the epoch → ``2025-01-31 12:00:00.123 UTC``; empty for none."""
    if not ms:
        return ""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{millis:03d} UTC"


def iso(ms: int | None) -> str:
    """Milliseconds since the epoch → the ISO-8601 a ``<time datetime>`` carries."""
    if not ms:
        return ""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_when(text: str | None) -> str:
    """An ISO-8601 time of the JSON API (``2025-01-31T12:00:00.123Z``) as :func:`when` shows
    one; empty for none."""
    if not text:
        return ""
    return text.replace("T", " ").removesuffix("Z") + " UTC"


def ago(text: str | None) -> str:
    """How long before now an ISO-8601 time of the JSON API was: ``1.2 s ago``."""
    if not text:
        return ""
    try:
        then = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    past = int((dt.datetime.now(dt.UTC) - then).total_seconds() * 1000)
    return f"{duration(max(0, past))} ago"


def duration(ms: int | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``, ``3 d 4 h``; empty for none."""
    if ms is None or ms < 0:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def pretty(data: bytes | None) -> str:
    """A JSON payload, indented; empty bytes are ``null``; cut past :data:`MAX_SHOWN_BYTES`."""
    if not data:
        return "null"
    if len(data) > MAX_SHOWN_BYTES:
        head = data[:MAX_SHOWN_BYTES].decode(errors="replace")
        return f"{head}\n… ({len(data):,} bytes in all: read it from the API)"
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return data.decode(errors="replace")


def compact(value: Any, limit: int = 120) -> str:
    """A JSON value on one line, cut at ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ErrorView:
    type: str
    message: str
    traceback: str = ""


def error_view(error: ErrorInfo | dict[str, Any] | None) -> ErrorView | None:
    if error is None:
        return None
    if isinstance(error, dict):
        return ErrorView(str(error.get("type", "")), str(error.get("message", "")))
    return ErrorView(error.type, error.message, error.traceback)


@dataclass
class Attempt:
    number: int
    started_ms: int = 0
    ended_ms: int = 0
    outcome: str = "running"
    """``running``, ``completed``, ``failed`` (for good) or ``retrying``."""
    error: ErrorView | None = None
    retry_at_ms: int = 0

    @property
    def duration(self) -> str:
        if self.started_ms and self.ended_ms:
            return duration(self.ended_ms - self.started_ms)
        return ""


@dataclass
class Item:
    """One position of the run's journal: a step with its attempts, or a wait."""

    index: int
    kind: str
    """``step``, ``sleep``, ``signal``, ``child``, ``cancel``, ``emit`` or ``patch``."""
    name: str
    state: str = "running"
    """How it stands: ``running``, ``retrying``, ``completed``, ``failed``, ``waiting``,
    ``done``, ``received``, ``timed_out``, ``cancelled``."""
    attempts: dict[int, Attempt] = field(default_factory=dict)
    started_ms: int = 0
    ended_ms: int = 0
    until_ms: int = 0
    child_run_id: str = ""
    child_status: str = ""
    output: str | None = None
    error: ErrorView | None = None
    journaled: bool = False

    @property
    def attempt_list(self) -> list[Attempt]:
        return [self.attempts[n] for n in sorted(self.attempts)]

    @property
    def duration(self) -> str:
        if self.started_ms and self.ended_ms:
            return duration(self.ended_ms - self.started_ms)
        return ""

    def attempt(self, number: int) -> Attempt:
        return self.attempts.setdefault(number, Attempt(number))


@dataclass
class EventView:
    seq: int
    type: str
    name: str
    at_ms: int
    data: str


@dataclass
class Timeline:
    items: list[Item]
    events: list[EventView]
    first_seq: int
    """The first event read: events before it are not shown (a long run's oldest)."""


def _data(event: Event) -> Any:
    try:
        return json.loads(event.data) if event.data else None
    except ValueError:
        return None


def _int(data: Any, key: str) -> int:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def timeline(entries: Sequence[JournalEntry], events: Sequence[Event]) -> Timeline:
    """The run's journal positions in order, each with what the events and the journal say."""
    items: dict[int, Item] = {}

    def item(index: int, kind: str, name: str) -> Item:
        found = items.get(index)
        if found is None:
            found = items[index] = Item(index=index, kind=kind, name=name)
        return found

    for event in events:
        data = _data(event)
        index = _int(data, "index")
        kind = event.type
        if kind == EventType.STEP_STARTED:
            step = item(index, "step", event.name)
            attempt = step.attempt(_int(data, "attempt") or 1)
            attempt.started_ms = attempt.started_ms or event.at_ms
            step.state = "running"
        elif kind == EventType.STEP_COMPLETED:
            step = item(index, "step", event.name)
            attempt = step.attempt(_int(data, "attempt") or 1)
            attempt.ended_ms, attempt.outcome, step.state = event.at_ms, "completed", "completed"
        elif kind == EventType.STEP_FAILED:
            step = item(index, "step", event.name)
            attempt = step.attempt(_int(data, "attempt") or 1)
            attempt.ended_ms = event.at_ms
            attempt.error = error_view(data.get("error") if isinstance(data, dict) else None)
            attempt.retry_at_ms = _int(data, "retry_at_ms")
            attempt.outcome = "retrying" if attempt.retry_at_ms else "failed"
            step.state = attempt.outcome
        elif kind == EventType.TIMER_STARTED:
            wait = item(index, "sleep", event.name)
            wait.until_ms, wait.started_ms, wait.state = (
                _int(data, "until_ms"),
                event.at_ms,
                "waiting",
            )
        elif kind == EventType.TIMER_FIRED:
            wait = item(index, "sleep", event.name)
            wait.ended_ms, wait.state = event.at_ms, "done"
        elif kind == EventType.SIGNAL_WAITING:
            wait = item(index, "signal", event.name)
            wait.until_ms, wait.started_ms, wait.state = (
                _int(data, "timeout_at_ms"),
                event.at_ms,
                "waiting",
            )
        elif kind == EventType.SIGNAL_TIMED_OUT:
            wait = item(index, "signal", event.name)
            wait.ended_ms, wait.state = event.at_ms, "timed_out"
        elif kind == EventType.SIGNAL_RECEIVED:
            to = data.get("delivered_to") if isinstance(data, dict) else None
            if isinstance(to, int) and not isinstance(to, bool):
                wait = item(to, "signal", event.name)
                wait.ended_ms, wait.state = event.at_ms, "received"
        elif kind == EventType.CHILD_STARTED:
            child = item(index, "child", event.name)
            child.child_run_id = str(data.get("child_run_id", "")) if isinstance(data, dict) else ""
            child.started_ms, child.state = event.at_ms, "waiting"
        elif kind == EventType.CHILD_FINISHED:
            child = item(index, "child", event.name)
            child.child_status = str(data.get("status", "")) if isinstance(data, dict) else ""
            child.ended_ms, child.state = event.at_ms, child.child_status or "done"
    for entry in entries:
        _journaled(item(entry.index, entry_kind_name(entry.kind), entry.name), entry)
    shown = [
        EventView(e.seq, e.type, e.name, e.at_ms, compact(_data(e)) if e.data else "")
        for e in events
    ]
    first = events[0].seq if events else 0
    return Timeline([items[i] for i in sorted(items)], shown, first)


def _journaled(item: Item, entry: JournalEntry) -> None:
    """What the journal says of a position, over what its events said."""
    item.kind, item.name, item.journaled = entry_kind_name(entry.kind), entry.name, True
    item.started_ms = entry.started_at_ms or item.started_ms
    item.ended_ms = entry.ended_at_ms or item.ended_ms
    item.until_ms = entry.until_ms or item.until_ms
    item.child_run_id = entry.child_run_id or item.child_run_id
    item.error = error_view(entry.error)
    if entry.error is None and not entry.pending:
        item.output = pretty(entry.output)
    cancelled = entry.error is not None and entry.error.type == ErrorType.CANCELLED
    if entry.kind == EntryKind.STEP:
        attempt = item.attempt(entry.attempt or 1)
        attempt.started_ms = entry.started_at_ms or attempt.started_ms
        attempt.ended_ms = entry.ended_at_ms or attempt.ended_ms
        attempt.outcome = "failed" if entry.error is not None else "completed"
        attempt.error = item.error if entry.error is not None else None
        attempt.retry_at_ms = 0
        item.state = attempt.outcome
    elif entry.kind in (EntryKind.CANCEL, EntryKind.EMIT, EntryKind.PATCH):
        item.state = "done"  # where the workflow was told of its cancellation; an event; a patch
    elif entry.pending:
        item.state = "waiting"
    elif cancelled:
        item.state = "cancelled"
    elif entry.kind == EntryKind.SLEEP:
        item.state = "done"
    elif entry.kind == EntryKind.SIGNAL:
        timed_out = entry.error is not None and entry.error.type == ErrorType.SIGNAL_TIMEOUT
        item.state = "timed_out" if timed_out else "received"
    elif entry.kind == EntryKind.CHILD:
        item.state = "failed" if entry.error is not None else "completed"


@dataclass
class RunView:
    """A run's header: everything of its ``Run`` a page shows."""

    id: str
    function: str
    status: str
    final: bool
    attempt: int
    worker_id: str
    created_ms: int
    updated_ms: int
    deadline_ms: int
    cancel_requested: bool
    cancel_deadline_ms: int
    parent_run_id: str
    idempotency_key: str
    last_event_seq: int
    input: str
    result: str | None
    error: ErrorView | None
    waiting: list[str]
    build_id: str
    """The build of the first worker that reported for it (empty until then)."""
    blocked_build_id: str
    """While blocked: the build whose code raised its error."""
    waiting_for_build: str
    """A pending pinned run no connected worker of its build can take waits for it."""
    retries: int
    kept_signals: list[KeptSignals]
    """Signals sent while no wait took them, per name: count and bytes (``Run.kept_signals``)."""

    @property
    def retryable(self) -> bool:
        """Failed or blocked: a retry resumes it (``POST /v1/runs/{id}/retry``)."""
        return self.status in ("failed", "blocked")

    @property
    def age(self) -> str:
        """How long it ran (final) or has been around (not yet)."""
        end = self.updated_ms if self.final else int(time.time() * 1000)
        return duration(end - self.created_ms) if self.created_ms else ""


def wait_text(kind: EntryKind, name: str, until_ms: int, child_run_id: str) -> str:
    if kind == EntryKind.SLEEP:
        return f"a timer, until {when(until_ms)}"
    if kind == EntryKind.SIGNAL:
        return f"signal {name!r}" + (f", until {when(until_ms)}" if until_ms else "")
    if kind == EntryKind.CHILD:
        return f"child run {child_run_id} ({name})"
    return name


def run_view(run: Run) -> RunView:
    return RunView(
        id=run.id,
        function=run.function,
        status=status_name(run.status),
        final=is_final(run.status),
        attempt=run.attempt,
        worker_id=run.worker_id,
        created_ms=run.created_at_ms,
        updated_ms=run.updated_at_ms,
        deadline_ms=run.deadline_ms,
        cancel_requested=run.cancel_requested,
        cancel_deadline_ms=run.cancel_deadline_ms,
        parent_run_id=run.parent_run_id,
        idempotency_key=run.idempotency_key,
        last_event_seq=run.last_event_seq,
        input=pretty(run.input),
        result=pretty(run.result) if run.status == RunStatus.COMPLETED else None,
        error=error_view(run.error),
        waiting=[wait_text(w.kind, w.name, w.until_ms, w.child_run_id) for w in run.waiting],
        build_id=run.build_id,
        blocked_build_id=run.blocked_build_id,
        waiting_for_build=run.waiting_for_build,
        retries=run.retries,
        kept_signals=list(run.kept_signals),
    )


@dataclass
class FunctionCounts:
    name: str
    retry: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


STATUSES = ("pending", "running", "suspended", "blocked", "completed", "failed", "cancelled")


def count_by_function(names: Iterable[str], runs: Iterable[Run]) -> dict[str, dict[str, int]]:
    """Runs counted by function and status; every function in ``names`` has a row."""
    counts = {name: dict.fromkeys(STATUSES, 0) for name in names}
    for run in runs:
        row = counts.setdefault(run.function, dict.fromkeys(STATUSES, 0))
        name = status_name(run.status)
        row[name] = row.get(name, 0) + 1
    return counts
