"""The human-readable output, from documents shaped as the API's."""

from __future__ import annotations

from datetime import UTC, datetime

from trine_admin import render


def test_tables_align_columns_without_trailing_spaces() -> None:
    text = render.table(("A", "NUMBER", "C"), [("x", "1", ""), ("longer", "100", "z")], right=(1,))
    assert text.splitlines() == [
        "A       NUMBER  C",
        "x            1",
        "longer     100  z",
    ]


def test_cells_are_one_line_and_cut() -> None:
    assert render.cell(None) == "-"
    assert render.cell({"a": [1, 2]}) == '{"a":[1,2]}'
    assert render.cell("two\nlines") == "two lines"
    assert render.cell("x" * 100, 10) == "x" * 9 + "…"


def test_durations() -> None:
    start = "2025-01-31T12:00:00.000Z"
    assert render.duration(start, "2025-01-31T12:00:00.012Z") == "12 ms"
    assert render.duration(start, "2025-01-31T12:00:01.520Z") == "1.52 s"
    assert render.duration(start, "2025-01-31T12:03:05.000Z") == "3m05s"
    assert render.duration(start, "2025-01-31T14:04:00.000Z") == "2h04m"
    assert render.duration(start, None) == "-"


def test_functions_with_timeouts_and_counts_when_the_api_gives_them() -> None:
    retry = {
        "max_attempts": 1,
        "initial_interval_ms": 1000,
        "max_interval_ms": 60000,
        "backoff_coefficient": 2.0,
    }
    functions = [
        {"name": "order", "retry": retry, "timeout_s": 90, "counts": {"completed": 7, "failed": 1}},
        {"name": "approval", "retry": None, "counts": {"suspended": 2}},
    ]
    header, order, approval = render.functions_table(functions).splitlines()
    assert header.split() == ["FUNCTION", "RETRY", "TIMEOUT", "SUSPENDED", "COMPLETED", "FAILED"]
    assert order.split() == ["order", "1", "attempt,", "1.00", "s", "to", "1m00s,", "x2", "1m30s",
                             "0", "7", "1"]  # fmt: skip
    assert approval.split() == ["approval", "default", "-", "2", "0", "0"]
    # without them: name and retry only
    header, _ = render.functions_table([{"name": "echo", "retry": None}]).splitlines()
    assert header.split() == ["FUNCTION", "RETRY"]


def test_workers_show_how_long_ago_the_last_heartbeat_was() -> None:
    now = datetime(2025, 1, 31, 12, 0, 2, 500000, tzinfo=UTC)
    worker = {
        "worker_id": "w-1",
        "functions": [{"name": "order"}, {"name": "echo"}],  # objects or names
        "max_concurrency": 8,
        "in_flight": 1,
        "free_slots": 7,
        "last_heartbeat_at": "2025-01-31T12:00:00.000Z",
    }
    _, row = render.workers_table([worker], now).splitlines()
    assert row.split() == ["w-1", "order,echo", "8", "1", "7", "2025-01-31T12:00:00.000Z", "(2.50",
                           "s", "ago)"]  # fmt: skip


def test_a_run_view_lines_up_and_leaves_out_what_is_absent() -> None:
    run = {
        "id": "01J",
        "function": "order",
        "status": "running",
        "attempt": 2,
        "created_at": "2025-01-31T12:00:00.000Z",
        "updated_at": "2025-01-31T12:00:01.000Z",
        "cancel_requested": True,
        "cancel_deadline": "2025-01-31T12:00:31.000Z",
        "input": {"a": 1},
        "result": None,
        "error": None,
        "waiting": [],
        "kept_signals": [],
    }
    assert render.run_view(run).splitlines() == [
        "id               01J",
        "function         order",
        "status           running",
        "attempt          2",
        "created          2025-01-31T12:00:00.000Z",
        "updated          2025-01-31T12:00:01.000Z",
        "cancel           requested, forced at 2025-01-31T12:00:31.000Z",
        "input            {",
        '                   "a": 1',
        "                 }",
    ]


def test_a_run_view_lists_the_signals_the_run_keeps() -> None:
    kept = [{"name": "go", "count": 2, "bytes": 14}, {"name": "stop", "count": 1, "bytes": 4}]
    lines = render.run_view({"id": "01J", "status": "pending", "kept_signals": kept}).splitlines()
    at = lines.index("kept signals     go: 2 (14 bytes)")
    assert lines[at : at + 2] == [
        "kept signals     go: 2 (14 bytes)",
        "                 stop: 1 (4 bytes)",
    ]
