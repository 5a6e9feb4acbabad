"""The human-readable output: aligned plain-text tables and ``key  value`` blocks, built from the
API's JSON documents as they come (a field the API does not send is shown as ``-``).

Times are the API's own ISO-8601 UTC strings; durations are computed from them. Cells are one
line each: payloads are compact JSON, cut at :data:`MAX_CELL` characters with ``…``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MAX_CELL = 60
STATUSES = ("pending", "running", "suspended", "blocked", "completed", "failed", "cancelled")
NONE = "-"


def compact(value: Any) -> str:
    """A JSON value on one line."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pretty(value: Any) -> str:
    """A JSON document as ``--json`` prints it."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def cell(value: Any, width: int = MAX_CELL) -> str:
    """One table cell: strings as they are, other values as compact JSON; one line, cut."""
    if value is None:
        return NONE
    text = value if isinstance(value, str) else compact(value)
    text = " ".join(text.split()) if "\n" in text or "\r" in text or "\t" in text else text
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Columns two spaces apart, each as wide as its widest cell; ``right``: the indexes of
    columns aligned right (numbers). No trailing spaces."""
    body = [list(row) for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    right = set(right)
    lines = []
    for row in [list(headers), *body]:
        cells = [
            text.rjust(widths[i]) if i in right else text.ljust(widths[i])
            for i, text in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str | None]]) -> str:
    """``key  value`` lines, keys aligned (as wide as the widest key, present or not, so every
    view of one kind lines up the same); a value of several lines is indented under its key;
    pairs whose value is None are left out."""
    width = max((len(key) for key, _ in pairs), default=0)
    kept = [(key, value) for key, value in pairs if value is not None]
    lines = []
    for key, value in kept:
        first, *rest = value.split("\n") if value else [""]
        lines.append(f"{key.ljust(width)}  {first}".rstrip())
        lines.extend(f"{' ' * (width + 2)}{line}".rstrip() for line in rest)
    return "\n".join(lines)


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def duration(start: Any, end: Any) -> str:
    """``12 ms``, ``1.52 s``, ``3m05s``, ``2h04m``: from ``start`` to ``end`` (ISO strings)."""
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return NONE
    return seconds((ended - began).total_seconds())


def seconds(s: float) -> str:
    if s < 1:
        return f"{round(s * 1000)} ms"
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        minutes, rest = divmod(round(s), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(round(s) // 60, 60)
    return f"{hours}h{rest:02d}m"


def ago(at: Any, now: datetime | None = None) -> str:
    """``2025-01-31T12:00:00.000Z (3.20 s ago)``."""
    when = parse_time(at)
    if when is None:
        return cell(at)
    elapsed = ((now or datetime.now(UTC)) - when).total_seconds()
    return f"{at} ({seconds(max(elapsed, 0.0))} ago)"


# -- runs ----------------------------------------------------------------------------------------


def runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """A row per run; a BUILD column when a run has one (workers that register a build)."""
    builds = any(run.get("build_id") for run in runs)
    headers = ["ID", "FUNCTION", "STATUS", "ATTEMPT", "CREATED", "UPDATED"]
    headers += ["BUILD"] if builds else []
    rows = []
    for run in runs:
        row = [
            cell(run.get("id")),
            cell(run.get("function")),
            run_status(run),
            cell(run.get("attempt")),
            cell(run.get("created_at")),
            cell(run.get("updated_at")),
        ]
        rows.append(row + ([cell(run.get("build_id"), 40)] if builds else []))
    return table(headers, rows, right=(3,))


def run_status(run: Mapping[str, Any]) -> str:
    """The status, with ``(cancelling)`` while a cancellation is requested and ``(waiting for
    build B)`` while a pinned run's build is gone."""
    status = str(run.get("status") or NONE)
    if run.get("cancel_requested"):
        status += " (cancelling)"
    if run.get("waiting_for_build"):
        status += f" (waiting for build {run['waiting_for_build']})"
    return status


def error_text(error: Mapping[str, Any] | None) -> str | None:
    """``Type: message`` of an API error object (a run's or a journal entry's)."""
    if not error:
        return None
    kind, message = error.get("type") or "", error.get("message") or ""
    return f"{kind}: {message}" if kind and message else kind or message


def waits_text(waits: Sequence[Mapping[str, Any]]) -> str | None:
    if not waits:
        return None
    return "\n".join(wait_text(wait) for wait in waits)


def wait_text(wait: Mapping[str, Any]) -> str:
    kind, name = wait.get("kind"), wait.get("name")
    if kind == "sleep":
        text = f"sleep until {wait.get('until')}"
    elif kind == "signal":
        text = f"signal {name!r}"
        if wait.get("until"):
            text += f" (times out at {wait.get('until')})"
    elif kind == "child":
        text = f"child run {wait.get('child_run_id')} ({name})"
    else:
        text = f"{kind} {name}"
    return f"{text} [journal {wait.get('index')}]"


def kept_text(kept: Sequence[Mapping[str, Any]]) -> str | None:
    """A run's kept signals, one name a line: ``go: 2 (14 bytes)``."""
    if not kept:
        return None
    return "\n".join(f"{k.get('name')}: {k.get('count')} ({k.get('bytes')} bytes)" for k in kept)


def run_view(run: Mapping[str, Any]) -> str:
    """``trine runs show``: every field a person looks at, the payloads as indented JSON."""
    error = run.get("error") or None
    traceback = str(error.get("traceback") or "").rstrip() if error else ""
    cancel = None
    if run.get("cancel_requested"):
        cancel = "requested"
        if run.get("cancel_deadline"):
            cancel += f", forced at {run['cancel_deadline']}"
    waiting_for = None
    if run.get("waiting_for_build"):
        waiting_for = f"build {run['waiting_for_build']} (no worker of it is connected)"
    blocked = None
    if run.get("blocked_build_id"):
        blocked = f"{run['blocked_build_id']} (its code raised the error; retry on fixed code)"
    return fields(
        [
            ("id", cell(run.get("id"), 200)),
            ("function", cell(run.get("function"), 200)),
            ("status", str(run.get("status") or NONE)),
            ("attempt", cell(run.get("attempt"))),
            ("retries", cell(run.get("retries")) if run.get("retries") else None),
            ("build", run.get("build_id")),
            ("waiting for", waiting_for),
            ("blocked build", blocked),
            ("created", cell(run.get("created_at"))),
            ("updated", cell(run.get("updated_at"))),
            ("deadline", run.get("deadline")),
            ("cancel", cancel),
            ("worker", run.get("worker_id")),
            ("idempotency key", run.get("idempotency_key")),
            ("parent", run.get("parent_run_id")),
            ("waiting", waits_text(run.get("waiting") or [])),
            ("kept signals", kept_text(run.get("kept_signals") or [])),
            ("input", pretty(run.get("input"))),
            ("result", pretty(run.get("result")) if run.get("status") == "completed" else None),
            ("error", error_text(error)),
            ("traceback", traceback or None),
        ]
    )


def journal_table(entries: Sequence[Mapping[str, Any]]) -> str:
    headers = ("INDEX", "KIND", "NAME", "ATTEMPT", "STARTED", "DURATION", "OUTCOME")
    rows = [
        (
            cell(entry.get("index")),
            cell(entry.get("kind")),
            cell(entry.get("name"), 40),
            cell(entry.get("attempt") or None),  # a wait has none: 0
            cell(entry.get("started_at")),
            duration(entry.get("started_at"), entry.get("ended_at")),
            outcome(entry),
        )
        for entry in entries
    ]
    return table(headers, rows, right=(0, 3))


def outcome(entry: Mapping[str, Any]) -> str:
    """What a journal entry came to: its output, its error, or what it still waits for."""
    child = f"child {entry['child_run_id']}: " if entry.get("child_run_id") else ""
    if entry.get("pending"):
        until = f" until {entry['until']}" if entry.get("until") else ""
        return f"{child}waiting{until}"
    error = error_text(entry.get("error"))
    if error is not None:
        return cell(f"{child}error {error}")
    return cell(child + compact(entry.get("output")))


def event_line(event: Mapping[str, Any]) -> str:
    """One event of ``trine runs events``: time, number, type, name, data."""
    data = event.get("data")
    columns = [
        cell(event.get("at")),
        str(event.get("seq", NONE)).rjust(4),
        str(event.get("type") or NONE).ljust(20),
        cell(event.get("name"), 40).ljust(16),
    ]
    if data is not None:
        columns.append(cell(data, 2 * MAX_CELL))
    return "  ".join(columns).rstrip()


# -- functions and workers -----------------------------------------------------------------------


def retry_text(retry: Mapping[str, Any] | None) -> str:
    """``5 attempts, 100 ms to 10.00 s, x1.1`` (the backoff), or ``default`` (the worker gave
    none: the runtime's default policy applies)."""
    if not retry:
        return "default"
    attempts = retry.get("max_attempts")
    text = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    initial, longest = retry.get("initial_interval_ms"), retry.get("max_interval_ms")
    if isinstance(initial, int | float) and isinstance(longest, int | float):
        text += f", {seconds(initial / 1000)} to {seconds(longest / 1000)}"
    if retry.get("backoff_coefficient") is not None:
        text += f", x{retry['backoff_coefficient']:g}"
    return text


def _timeout(function: Mapping[str, Any]) -> str:
    for key, scale in (("timeout_s", 1), ("timeout", 1), ("timeout_ms", 1000)):
        value = function.get(key)
        if isinstance(value, int | float) and value > 0:
            return seconds(value / scale)
    return NONE


def _counts(function: Mapping[str, Any]) -> Mapping[str, Any] | None:
    counts = function.get("counts")
    return counts if isinstance(counts, Mapping) else None


def functions_table(functions: Sequence[Mapping[str, Any]]) -> str:
    """Name and retry policy; the timeout and the counts of runs by status when the API gives
    them (``timeout_s``, ``counts``: ``{status: n}``)."""
    with_timeout = any(_timeout(f) != NONE for f in functions)
    counted = [c for f in functions if (c := _counts(f)) is not None]
    statuses = [s for s in STATUSES if any(s in c for c in counted)]
    statuses += sorted({s for c in counted for s in c} - set(statuses))
    headers = ["FUNCTION", "RETRY"] + (["TIMEOUT"] if with_timeout else []) + statuses
    headers = [h.upper() for h in headers]
    rows = []
    for function in functions:
        row = [cell(function.get("name")), retry_text(function.get("retry"))]
        if with_timeout:
            row.append(_timeout(function))
        counts = _counts(function) or {}
        row.extend(cell(counts.get(status, 0 if counted else None)) for status in statuses)
        rows.append(row)
    first_count = len(headers) - len(statuses)
    return table(headers, rows, right=range(first_count, len(headers)))


def workers_table(workers: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A row per worker process; a STATE column when one drains, a COORDINATOR column when
    the workers are several coordinators'."""
    draining = any(worker.get("draining") for worker in workers)
    coordinators = {worker.get("coordinator") for worker in workers}
    several = len(coordinators) > 1
    headers = ["WORKER", "FUNCTIONS", "MAX", "IN FLIGHT", "FREE", "LAST HEARTBEAT"]
    headers += ["STATE"] if draining else []
    headers += ["COORDINATOR"] if several else []
    rows = []
    for worker in workers:
        functions = worker.get("functions")
        names = [
            str(f.get("name") if isinstance(f, Mapping) else f)
            for f in (functions if isinstance(functions, list) else [])
        ]
        row = [
            cell(worker.get("worker_id"), 40),
            cell(",".join(names)) if names else NONE,
            cell(worker.get("max_concurrency")),
            cell(worker.get("in_flight")),
            cell(worker.get("free_slots")),
            ago(worker.get("last_heartbeat_at"), now),
        ]
        row += ["draining" if worker.get("draining") else "serving"] if draining else []
        row += [cell(worker.get("coordinator"))] if several else []
        rows.append(row)
    return table(headers, rows, right=(2, 3, 4))


def builds_table(builds: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """``trine builds``: a row per build, with whether a worker of it asks for work now and the
    runs not ended that started on it."""
    headers = ("BUILD", "STATE", "OPEN RUNS", "FUNCTIONS", "LAST SEEN")
    rows = [
        (
            cell(build.get("build_id"), 40),
            "connected" if build.get("connected") else "gone",
            cell(build.get("open_runs")),
            cell(",".join(str(f) for f in build.get("functions") or [])) or NONE,
            ago(build.get("last_seen"), now) if build.get("last_seen") else NONE,
        )
        for build in builds
    ]
    return table(headers, rows, right=(2,))


def runs_in_flight_table(workers: Sequence[Mapping[str, Any]]) -> str | None:
    """The runs the workers hold now (``runs`` of each worker), a row each; None if none."""
    headers = ("RUN", "FUNCTION", "WORKER", "ATTEMPT", "SINCE", "STEP")
    rows = [
        (
            cell(run.get("run_id")),
            cell(run.get("function")),
            cell(worker.get("worker_id"), 40),
            cell(run.get("attempt")),
            cell(run.get("since")),
            cell(run.get("step")),
        )
        for worker in workers
        for run in (worker.get("runs") or [])
        if isinstance(run, Mapping)
    ]
    return table(headers, rows, right=(3,)) if rows else None
