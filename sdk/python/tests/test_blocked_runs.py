"""Workflow errors (docs/versioning.md): an exception of the workflow's own code or a
non-determinism blocks the run (``RunBlocked``) under ``on_workflow_error="block"``, the default,
and fails it under ``"fail"``; a step's final error or a deliberate failure fails it either way.
The error's traceback shows the user's frames, not the SDK's."""

from __future__ import annotations

import logging
import re

import pytest

import trine


def final(session, run_id: str):
    [(kind, value)] = [(k, v) for k, v in session.commands(run_id) if k.startswith("run_")]
    return kind, value.error


def lookup(rows: dict, key: str) -> int:
    return rows[key]  # the user's bug: a KeyError raised here, in a helper of the workflow


async def test_an_exception_of_the_workflow_blocks_the_run_with_the_users_traceback(
    coordinator, make_worker, serve, item, logs
) -> None:
    worker = make_worker(build_id="build-7")

    @worker.function
    async def importer(ctx: trine.Context, rows: dict) -> int:
        await ctx.step("fetch", lambda: len(rows))
        return lookup(rows, "missing")

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "importer", {"a": 1}))
    await coordinator.until(lambda: session.finished("r1"))

    kind, error = final(session, "r1")
    assert kind == "run_blocked"
    assert error.type == "KeyError"
    assert error.message == "'missing'"
    traceback = error.traceback
    assert 'return lookup(rows, "missing")' in traceback  # the workflow's line
    assert "return rows[key]" in traceback  # down to where it raised
    assert __file__ in traceback
    assert re.search(r"trine[/\\]_\w+\.py", traceback) is None  # no frame of the SDK
    assert traceback.rstrip().endswith("KeyError: 'missing'")

    [line] = [r for r in logs.records if "run blocked" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert (line.run_id, line.function, line.build_id) == ("r1", "importer", "build-7")
    assert "build-7" in line.getMessage()


async def test_under_fail_a_workflow_exception_fails_the_run(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function(on_workflow_error="fail")
    async def importer(ctx: trine.Context, rows: dict) -> int:
        return lookup(rows, "missing")

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "importer", {}))
    await coordinator.until(lambda: session.finished("r1"))
    kind, error = final(session, "r1")
    assert kind == "run_failed"
    assert error.type == "KeyError"


def declined() -> None:
    raise trine.NonRetryableError("card declined")


@pytest.mark.parametrize("catch_and_reraise", [False, True])
async def test_a_steps_final_error_and_a_deliberate_failure_fail_the_run(
    coordinator, make_worker, serve, item, catch_and_reraise: bool
) -> None:
    worker = make_worker()

    @worker.function
    async def pay(ctx: trine.Context, _: None) -> None:
        try:
            await ctx.step("charge", declined)
        except trine.StepError as error:
            if catch_and_reraise:  # a deliberate failure of the workflow
                raise trine.NonRetryableError(f"payment failed: {error.message}") from error
            raise

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "pay"))
    await coordinator.until(lambda: session.finished("r1"))
    kind, error = final(session, "r1")
    assert kind == "run_failed"
    assert error.type == ("NonRetryableError" if catch_and_reraise else "StepError")


async def test_a_caught_non_determinism_still_blocks_the_run(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def changed(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.step("ship", lambda: 1)
        except trine.NonDeterminismError:
            return "swallowed"
        return "ok"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "changed", journal=[entry(0, "charge", 1)], attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    kind, error = final(session, "r1")
    assert kind == "run_blocked"
    assert error.type == "NonDeterminismError"
    assert "at journal position 0 this execution calls step 'ship'" in error.message
    assert "recorded step 'charge'" in error.message
    assert 'guard the new code with `if ctx.patched("<id>"):`' in error.message
    assert 'await ctx.step("ship"' in error.traceback  # where the workflow made the call
    assert re.search(r"trine[/\\]_\w+\.py", error.traceback) is None
