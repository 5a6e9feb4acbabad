"""``ctx.log``: the workflow's lines are not written again while a later attempt replays, and
every line carries the run's keys as record attributes (for structured handlers)."""

from __future__ import annotations

import io
import json
import logging

import pytest

import trine
from trine_proto.trine.v1 import EntryKind


def lines(logs, text: str) -> list[logging.LogRecord]:
    return [r for r in logs.records if r.getMessage().endswith(text)]


async def test_a_line_before_a_journaled_step_is_logged_once_across_attempts(
    coordinator, make_worker, serve, item, entry, counting, logs
) -> None:
    worker = make_worker()
    counts: dict[str, int] = {}
    replaying: list[bool] = []

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        replaying.append(ctx.replaying)
        ctx.log.info("before")
        await ctx.step("a", counting(counts, "a"), 1)
        ctx.log.info("after")
        return "done"

    serve(worker)
    session = await coordinator.registered()
    # The first attempt runs the step; the second (its end was not recorded: a crash) replays it.
    session.dispatch(item("r2", "wf"))
    await coordinator.until(lambda: session.finished("r2"))
    session.dispatch(item("r2", "wf", journal=[entry(0, "a", {"step": "a"})], attempt=2))
    await coordinator.until(lambda: len(session.commands("r2")) > 3)

    assert counts == {"a": 1}  # the replay did not run the step again
    assert replaying == [False, True]
    before = [r for r in lines(logs, "before") if r.run_id == "r2"]
    assert len(before) == 1  # the replaying attempt did not write it again
    assert before[0].attempt == 1
    # After the replay caught up, the workflow's lines are written.
    after = [r for r in lines(logs, "after") if r.run_id == "r2"]
    assert [r.attempt for r in after] == [1, 2]


async def test_lines_between_journaled_calls_are_not_repeated_after_a_wait(
    coordinator, make_worker, serve, item, entry, wait_entry, logs
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        ctx.log.info("before")
        await ctx.step("a", lambda: 1)
        ctx.log.info("between")
        await ctx.sleep(60)
        ctx.log.warning("woke")
        return "done"

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "a", 1), wait_entry(1, EntryKind.SLEEP, "sleep")]
    session.dispatch(item("r1", "wf", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))

    assert lines(logs, "before") == []
    assert lines(logs, "between") == []
    [woke] = lines(logs, "woke")
    assert (woke.run_id, woke.function, woke.attempt) == ("r1", "wf", 2)
    assert woke.getMessage() == "[wf r1] woke"


async def test_the_sdks_own_lines_about_a_run_are_kept_while_replaying(
    coordinator, make_worker, serve, item, entry, logs
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> str:
        await ctx.step("a", lambda: 1)
        raise ValueError("boom")

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf", journal=[entry(0, "a", 1)], attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [blocked] = [r for r in logs.records if "run blocked" in r.getMessage()]
    assert (blocked.run_id, blocked.function, blocked.attempt) == ("r1", "wf", 2)
    assert blocked.error_type  # a call's own extra= is kept beside the run's keys


async def test_structlog_renders_the_run_keys_of_the_sdks_lines(
    coordinator, make_worker, serve, item
) -> None:
    structlog = pytest.importorskip("structlog")
    # The set-up docs/operations.md (## Logs) shows, on the trine logger instead of the root.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logger = logging.getLogger("trine")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    worker = make_worker()

    @worker.function(on_workflow_error="fail")
    async def wf(ctx: trine.Context, _: None) -> str:
        ctx.log.info("hello")
        raise ValueError("boom")

    try:
        serve(worker)
        session = await coordinator.registered()
        session.dispatch(item("r1", "wf"))
        await coordinator.until(lambda: session.finished("r1"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("run_id") == "r1"]
    assert [(line["event"], line["level"]) for line in mine] == [
        ("[wf r1] hello", "info"),
        ("[wf r1] run failed: ValueError: boom", "warning"),
    ]
    assert all((line["function"], line["attempt"]) == ("wf", 1) for line in mine)
    assert mine[1]["error_type"] == "ValueError"
