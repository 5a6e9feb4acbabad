"""The engine's instruments (trine_engine.metrics) move with what the engine does, each by the
function; the gauges read its state at collection and stop once it is closed."""

from __future__ import annotations

from typing import Any

import pytest

from trine_core import InvalidArgument
from trine_core.instruments import REGISTRY
from trine_proto.trine.v1 import RetryPolicy, RunStatus

Harness = Any
FUNCTION = "metered"  # a function no other test uses: the registry is the process's


def value(name: str, *labels: str) -> float:
    instrument = REGISTRY.get(name)
    assert instrument is not None, name
    family = instrument.collect()
    found = [s for s in family.samples if s.labels == labels]
    if not found:
        return 0.0
    return found[0].count if family.kind == "histogram" else found[0].value


def snapshot() -> dict[str, float]:
    return {
        "started": value("trine_runs_started_total", FUNCTION),
        "completed": value("trine_runs_finished_total", FUNCTION, "completed"),
        "failed": value("trine_runs_finished_total", FUNCTION, "failed"),
        "run_durations": value("trine_run_duration_seconds", FUNCTION),
        "attempts": value("trine_step_attempts_total", FUNCTION),
        "retries": value("trine_step_retries_total", FUNCTION),
        "failures": value("trine_step_failures_total", FUNCTION),
        "step_durations": value("trine_step_duration_seconds", FUNCTION),
        "dispatches": value("trine_dispatch_latency_seconds", FUNCTION),
        "appends": value("trine_journal_append_seconds"),
        "commits": value("trine_journal_commit_seconds"),
        "batches": value("trine_journal_batch_records"),
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def test_a_run_with_a_retry_and_a_final_failure(h: Harness) -> None:
    await h.register(FUNCTION, retry=RetryPolicy(max_attempts=2, initial_interval_ms=10))
    before = snapshot()
    run = await h.start(FUNCTION)
    item = await h.take_one(functions=(FUNCTION,))
    await h.report(item, h.started(0, "a"), h.completed(0, "a"))
    await h.report(item, h.failed(1, "b", attempt=1))  # retried
    h.clock.advance(10)
    item = await h.take_one(functions=(FUNCTION,), wait_ms=5_000)
    await h.report(item, h.failed(1, "b", attempt=2))  # out of attempts: final
    await h.report(item, h.fail())
    assert h.inspect(run.id).run.status == RunStatus.FAILED
    change = moved(before)
    assert {k: change.pop(k) for k in ("appends", "commits", "batches")}  # the journal moved
    assert change == {
        "started": 1,
        "failed": 1,
        "run_durations": 1,
        "attempts": 3,
        "retries": 1,
        "failures": 1,
        "dispatches": 2,
    }


async def test_step_durations_come_from_the_worker_times(h: Harness) -> None:
    await h.register(FUNCTION)
    await h.start(FUNCTION)
    item = await h.take_one(functions=(FUNCTION,))
    before = snapshot()
    command = h.completed(0, "timed")
    command.step_completed.entry.started_at_ms = 1_000
    command.step_completed.entry.ended_at_ms = 1_250
    await h.report(item, command, h.finish())
    change = moved(before)
    assert change["step_durations"] == 1
    assert change["completed"] == 1
    durations = REGISTRY.get("trine_step_duration_seconds")
    assert durations is not None
    (sample,) = [s for s in durations.collect().samples if s.labels == (FUNCTION,)]
    assert sample.value >= 0.25


async def test_a_refused_report_counts_nothing(h: Harness) -> None:
    await h.register(FUNCTION)
    await h.start(FUNCTION)
    item = await h.take_one(functions=(FUNCTION,))
    before = snapshot()
    with pytest.raises(InvalidArgument):
        await h.report(item, h.completed(0, "a"), h.completed(5, "out-of-order"))
    assert {k: v for k, v in moved(before).items() if k.startswith(("attempt", "step"))} == {}


async def test_gauges_read_the_engine_state_until_it_closes(h: Harness) -> None:
    await h.register(FUNCTION)
    await h.start(FUNCTION)
    await h.start(FUNCTION)
    assert value("trine_ready_queue_depth", FUNCTION) == 2
    assert value("trine_runs_active", FUNCTION) == 2
    item = await h.take_one(functions=(FUNCTION,))
    await h.report(item, h.sleep(0, duration_ms=60_000))
    assert value("trine_runs_suspended", FUNCTION) == 1
    assert value("trine_timers_pending") >= 1
    assert value("trine_ready_queue_depth", FUNCTION) == 1
    await h.close()
    assert value("trine_runs_active", FUNCTION) == 0
    assert value("trine_runs_suspended", FUNCTION) == 0
    await h.open()  # the fixture closes it again
