"""``ctx.patched`` and ``ctx.deprecate_patch`` (docs/versioning.md): a first pass takes the new
path and journals a marker with its next report; a replay takes the path its journal recorded."""

from __future__ import annotations

import asyncio
import json

import pytest

import trine
from trine_proto.trine.v1 import EntryKind


def patch_marker(wait_entry, index: int, change_id: str):
    return wait_entry(index, EntryKind.PATCH, change_id)


def receipt_worker(make_worker, taken: list[str]) -> trine.Worker:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> list[str]:
        path = [await ctx.step("charge", lambda: "charge")]
        if ctx.patched("send-receipt"):
            taken.append("new")
            path.append(await ctx.step("send_receipt", lambda: "receipt"))
        else:
            taken.append("old")
        path.append(await ctx.step("ship", lambda: "ship"))
        return path

    return worker


async def test_a_first_pass_takes_the_new_path_and_journals_a_marker_with_its_next_report(
    coordinator, make_worker, serve, item
) -> None:
    taken: list[str] = []
    serve(receipt_worker(make_worker, taken))
    session = await coordinator.registered()
    session.dispatch(item("r1", "order"))
    await coordinator.until(lambda: session.finished("r1"))

    assert taken == ["new"]
    reports = [
        [c for c in r.report.commands if c.step_started is None]
        for r in session.reports
        if r.report.run_id == "r1"
    ]
    # The marker at position 1 goes out first in the report of the step at position 2.
    marker_report = next(r for r in reports if any(c.patched is not None for c in r))
    assert marker_report[0].patched is not None
    assert (marker_report[0].patched.index, marker_report[0].patched.change_id) == (
        1,
        "send-receipt",
    )
    assert marker_report[1].step_completed.entry.index == 2
    assert marker_report[1].step_completed.entry.name == "send_receipt"
    [(_, done)] = [(k, v) for k, v in session.commands("r1") if k == "run_completed"]
    assert json.loads(done.result) == ["charge", "receipt", "ship"]


async def test_a_replay_with_the_marker_takes_the_new_path(
    coordinator, make_worker, serve, item, entry, wait_entry
) -> None:
    taken: list[str] = []
    serve(receipt_worker(make_worker, taken))
    session = await coordinator.registered()
    journal = [entry(0, "charge", "charge"), patch_marker(wait_entry, 1, "send-receipt")]
    session.dispatch(item("r1", "order", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))

    assert taken == ["new"]
    commands = session.commands("r1")
    assert not any(k == "patched" for k, _ in commands)  # journaled already
    completed = [v.entry for k, v in commands if k == "step_completed"]
    assert [(e.index, e.name) for e in completed] == [(2, "send_receipt"), (3, "ship")]


async def test_a_replay_without_the_marker_takes_the_old_path_and_consumes_nothing(
    coordinator, make_worker, serve, item, entry
) -> None:
    taken: list[str] = []
    serve(receipt_worker(make_worker, taken))
    session = await coordinator.registered()
    # Written by the code before the patch: charge, then ship at position 1.
    journal = [entry(0, "charge", "charge"), entry(1, "ship", "ship")]
    session.dispatch(item("r1", "order", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))

    assert taken == ["old"]
    [(kind, value)] = session.commands("r1")
    assert kind == "run_completed"
    assert json.loads(value.result) == ["charge", "ship"]


async def test_a_marker_met_by_another_call_is_a_non_determinism_naming_the_patch(
    coordinator, make_worker, serve, item, entry, wait_entry
) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> None:
        await ctx.step("charge", lambda: "charge")
        await ctx.step("send_receipt", lambda: "receipt")  # the guard was removed

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "charge", "charge"), patch_marker(wait_entry, 1, "send-receipt")]
    session.dispatch(item("r1", "order", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, value)] = session.commands("r1")
    assert kind == "run_blocked"
    assert value.error.type == "NonDeterminismError"
    assert "recorded patch 'send-receipt'" in value.error.message
    assert 'ctx.deprecate_patch("send-receipt")' in value.error.message


@pytest.mark.parametrize("marked", [True, False])
async def test_deprecate_patch_steps_over_the_marker_and_journals_nothing(
    coordinator, make_worker, serve, item, entry, wait_entry, marked: bool
) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> list[str]:
        path = [await ctx.step("charge", lambda: "charge")]
        ctx.deprecate_patch("send-receipt")
        path.append(await ctx.step("send_receipt", lambda: "receipt"))
        return path

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "charge", "charge")]
    if marked:
        journal.append(patch_marker(wait_entry, 1, "send-receipt"))
    session.dispatch(item("r1", "order", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))

    commands = session.commands("r1")
    assert not any(k == "patched" for k, _ in commands)
    [step] = [v.entry for k, v in commands if k == "step_completed"]
    assert (step.index, step.name) == (2 if marked else 1, "send_receipt")
    assert commands[-1][0] == "run_completed"


async def test_a_marker_of_a_run_that_ends_right_after_goes_with_its_final_report(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> bool:
        return ctx.patched("quick")

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    [report] = [r.report for r in session.reports if r.report.run_id == "r1"]
    [marker, done] = report.commands
    assert (marker.patched.index, marker.patched.change_id) == (0, "quick")
    assert json.loads(done.run_completed.result) is True


async def test_concurrent_calls_keep_the_marker_in_journal_order(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "slow"

    async def patched_then_step(ctx: trine.Context) -> str:
        assert ctx.patched("fast-path")
        return await ctx.step("fast", lambda: "fast")

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> list[str]:
        return list(await asyncio.gather(ctx.step("slow", slow), patched_then_step(ctx)))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    # The fast step (position 2) is done, but waits for the slow one (position 0) to report.
    await coordinator.until(lambda: any(k == "step_started" for k, _ in session.commands("r1")))
    release.set()
    await coordinator.until(lambda: session.finished("r1"))
    journaled = [
        (v.entry.index if k == "step_completed" else v.index)
        for k, v in session.commands("r1")
        if k in ("step_completed", "patched")
    ]
    assert journaled == [0, 1, 2]


@pytest.mark.parametrize("change_id", ["", "has space", "x" * 201, "ümlaut"])
async def test_a_bad_change_id_is_a_value_error_in_the_workflow(
    coordinator, make_worker, serve, item, change_id: str
) -> None:
    worker = make_worker()
    caught: list[str] = []

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None:
        try:
            ctx.patched(change_id)
        except ValueError as error:
            caught.append(str(error))
        with pytest.raises(ValueError, match="change id"):
            ctx.deprecate_patch(change_id)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    [message] = caught
    assert repr(change_id) in message
    assert "1 to 200 characters" in message
    assert [k for k, _ in session.commands("r1")] == ["run_completed"]  # nothing journaled
