"""Replay: calls the journal holds return (or raise) what it recorded, and are checked against
what the workflow calls now."""

from __future__ import annotations

import json

import trine
from trine_proto.trine.v1 import ErrorInfo


async def test_replay_returns_journaled_outputs_without_running_the_steps(
    coordinator, make_worker, serve, item, entry, counting
) -> None:
    worker = make_worker()
    counts: dict[str, int] = {}
    seen: list[object] = []

    @worker.function
    async def three(ctx: trine.Context, value: int) -> list:
        outputs = []
        for name in ("a", "b", "c"):
            outputs.append(await ctx.step(name, counting(counts, name), value))
            seen.append(ctx.replaying)
        return outputs

    serve(worker)
    session = await coordinator.registered()
    journal = [entry(0, "a", {"recorded": "a"}), entry(1, "b", {"recorded": "b"})]
    session.dispatch(item("r1", "three", 5, journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))

    assert counts == {"c": 1}  # only the step past the journal executed
    commands = session.commands("r1")
    assert [k for k, _ in commands] == ["step_started", "step_completed", "run_completed"]
    assert (commands[0][1].index, commands[0][1].name) == (2, "c")
    assert json.loads(commands[-1][1].result) == [
        {"recorded": "a"},
        {"recorded": "b"},
        {"step": "c", "value": 5},
    ]
    assert seen == [True, False, False]


async def test_a_journaled_failure_is_raised_again_on_replay(
    coordinator, make_worker, serve, item, entry, counting
) -> None:
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> dict:
        try:
            await ctx.step("pay", counting({}, "pay"), 1)
        except trine.StepError as exc:
            return {"type": exc.type, "message": exc.message, "index": exc.index}
        return {}

    serve(worker)
    session = await coordinator.registered()
    failed = entry(0, "pay", error=ErrorInfo(type="CardDeclined", message="no funds"))
    session.dispatch(item("r1", "wf", journal=[failed]))
    await coordinator.until(lambda: session.finished("r1"))
    (kind, value), *_ = session.commands("r1")
    assert kind == "run_completed"
    assert json.loads(value.result) == {"type": "CardDeclined", "message": "no funds", "index": 0}


async def test_a_different_step_at_a_journaled_position_blocks_the_run(
    coordinator, make_worker, serve, item, entry, counting
) -> None:
    worker = make_worker()

    @worker.function
    async def changed(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.step("charge", counting({}, "charge"), 1)
        except Exception:
            return "swallowed"  # catching it does not save the run
        return "ok"

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "changed", journal=[entry(0, "validate", {})]))
    await coordinator.until(lambda: session.finished("r1"))
    [(kind, value)] = session.commands("r1")
    assert kind == "run_blocked"
    assert value.error.type == "NonDeterminismError"
    assert "'validate'" in value.error.message
    assert "'charge'" in value.error.message
    assert "position 0" in value.error.message
    assert not value.error.retryable


async def test_a_sleep_where_the_journal_has_a_step_is_non_determinism(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def changed(ctx: trine.Context, _: None) -> None:
        await ctx.sleep(1)

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "changed", journal=[entry(0, "charge", 1)], attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(_kind, value)] = session.commands("r1")
    assert value.error.type == "NonDeterminismError"
    assert "calls sleep" in value.error.message
    assert "recorded step 'charge'" in value.error.message


async def test_journaled_values_replay_the_same(
    coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    @worker.function
    async def values(ctx: trine.Context, _: None) -> list:
        now = await ctx.now()
        ident = await ctx.uuid()
        roll = await ctx.random()
        return [now.isoformat(), str(ident), roll]

    serve(worker)
    session = await coordinator.registered()
    journal = [
        entry(0, "ctx.now", 1_700_000_000_000),
        entry(1, "ctx.uuid", "12345678-1234-5678-1234-567812345678"),
        entry(2, "ctx.random", 0.25),
    ]
    session.dispatch(item("r1", "values", journal=journal, attempt=2))
    await coordinator.until(lambda: session.finished("r1"))
    [(_kind, value)] = session.commands("r1")
    assert json.loads(value.result) == [
        "2023-11-14T22:13:20+00:00",
        "12345678-1234-5678-1234-567812345678",
        0.25,
    ]
