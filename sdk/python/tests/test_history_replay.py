"""``trine.testing.replay``: exported histories (``trine.history/1``) replayed against a worker's
code, in-process, without running any step (docs/versioning.md, "Replay checks")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trine
import trine.testing

ran: list[str] = []  # step bodies that executed: a replay never runs one


def body(name: str) -> Any:
    def run() -> Any:
        ran.append(name)
        return name

    return run


def history(
    journal: list[dict[str, Any]],
    *,
    status: str = "completed",
    function: str = "order",
    run_input: Any = None,
) -> dict[str, Any]:
    """A history as ``GET /v1/runs/{id}/history`` exports it (the fields replay reads, and some
    it ignores)."""
    entries = [
        {
            "index": index,
            "input_digest": "",
            "attempt": 1,
            "started_at": None,
            "ended_at": None,
            "pending": False,
            "until": None,
            "child_run_id": None,
            "output": None,
            "error": None,
            **fields,
        }
        for index, fields in enumerate(journal)
    ]
    run = {"id": "r-1", "function": function, "status": status, "input": run_input, "attempt": 1}
    return {
        "format": "trine.history/1",
        "exported_at": "2026-12-01T10:00:00.000Z",
        "run": run,
        "journal": entries,
    }


def step(name: str, output: Any = None, **fields: Any) -> dict[str, Any]:
    return {"kind": "step", "name": name, "output": name if output is None else output, **fields}


def order_worker(code: str) -> trine.Worker:
    """The docs' example: ``send_receipt`` added to ``order`` guarded (``patched``) or not
    (``unguarded``), or the original (``original``)."""
    worker = trine.Worker(build_id=code)

    @worker.function
    async def order(ctx: trine.Context, _: None) -> list[str]:
        path = [await ctx.step("charge", body("charge"))]
        if code == "unguarded" or (code == "patched" and ctx.patched("send-receipt")):
            path.append(await ctx.step("send_receipt", body("send_receipt")))
        path.append(await ctx.step("ship", body("ship")))
        return path

    return worker


WITHOUT_PATCH = history([step("charge"), step("ship")])
WITH_PATCH = history(
    [step("charge"), {"kind": "patch", "name": "send-receipt"}, step("send_receipt"), step("ship")]
)


@pytest.fixture(autouse=True)
def no_step_runs() -> Any:
    ran.clear()
    yield
    assert ran == []


def test_a_history_written_without_the_patch_replays_against_the_guarded_code() -> None:
    trine.testing.replay(order_worker("patched"), WITHOUT_PATCH)
    trine.testing.replay(order_worker("patched"), WITH_PATCH)
    trine.testing.replay(order_worker("original"), WITHOUT_PATCH)


def test_the_unguarded_change_fails_naming_the_call_and_the_patch_to_use() -> None:
    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(order_worker("unguarded"), WITHOUT_PATCH)
    error = caught.value
    assert (error.index, error.expected, error.got) == (1, "step 'ship'", "step 'send_receipt'")
    assert 'guard the new code with `if ctx.patched("<id>"):`' in str(error)
    assert any("run r-1" in note for note in error.__notes__)


def test_removing_the_guard_fails_the_histories_that_took_the_new_path_naming_the_change() -> None:
    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(order_worker("unguarded"), WITH_PATCH)
    assert caught.value.expected == "patch 'send-receipt'"
    assert 'ctx.patched("send-receipt")' in str(caught.value)


def test_a_call_past_the_end_of_a_completed_run_is_a_non_determinism() -> None:
    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(order_worker("unguarded"), history([step("charge")]))
    error = caught.value
    assert error.index == 1
    assert error.got == "step 'send_receipt'"
    assert "the end of the journal (the run completed there)" in str(error)


def test_a_completed_runs_code_must_return() -> None:
    worker = trine.Worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> None:
        await ctx.step("charge", body("charge"))
        raise RuntimeError("a bug added since")

    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(worker, history([step("charge")]))
    assert "RuntimeError: a bug added since" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_failed_or_cancelled_run_replays_to_where_it_stopped() -> None:
    worker = trine.Worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> None:
        await ctx.step("charge", body("charge"))
        assert not ctx.patched("later-change")  # past a finished run's journal: the old path
        await ctx.step("ship", body("ship"))  # the run timed out before this: nothing to check

    failed = history([step("charge")], status="failed")
    trine.testing.replay(worker, failed)
    trine.testing.replay(worker, history([step("charge")], status="cancelled"))


def test_every_entry_kind_replays_its_recorded_value_or_error() -> None:
    worker = trine.Worker()
    seen: dict[str, Any] = {}

    @worker.function
    async def order(ctx: trine.Context, order: dict) -> None:
        seen["input"] = order
        seen["step"] = await ctx.step("quote", body("quote"))
        await ctx.sleep(3600)
        seen["signal"] = await ctx.wait_for_signal("approve")
        try:
            await ctx.run("payment", {"amount": 3})
        except trine.ChildRunError as error:
            seen["child"] = (error.child_run_id, error.type, error.message)
        await ctx.emit("progress", {"n": 1})
        try:
            await ctx.step("ship", body("ship"))
        except trine.CancelledError:
            seen["cancelled"] = True
        try:
            await ctx.step("flaky", body("flaky"))
        except trine.StepError as error:
            seen["step_error"] = (error.index, error.type, error.message)

    journal = [
        step("quote", {"price": 3}),
        {"kind": "sleep", "name": "sleep", "until": "2026-12-01T11:00:00.000Z"},
        {"kind": "signal", "name": "approve", "output": {"by": "ada"}},
        {
            "kind": "child",
            "name": "payment",
            "child_run_id": "r-2",
            "error": {"type": "CardDeclined", "message": "no funds", "traceback": ""},
        },
        {"kind": "emit", "name": "progress", "output": {"n": 1}},
        {"kind": "cancel", "name": "ship", "error": {"type": "Cancelled", "message": "bye"}},
        {"kind": "step", "name": "flaky", "error": {"type": "ValueError", "message": "bad"}},
    ]
    trine.testing.replay(worker, history(journal, run_input={"id": 7}))
    assert seen == {
        "input": {"id": 7},
        "step": {"price": 3},
        "signal": {"by": "ada"},
        "child": ("r-2", "CardDeclined", "no funds"),
        "cancelled": True,
        "step_error": (6, "ValueError", "bad"),
    }


def test_an_unfinished_run_replays_up_to_its_pending_wait() -> None:
    worker = trine.Worker()
    reached: list[str] = []

    @worker.function
    async def order(ctx: trine.Context, _: None) -> None:
        await ctx.step("charge", body("charge"))
        await ctx.wait_for_signal("approve")
        reached.append("after the signal")

    pending = {"kind": "signal", "name": "approve", "pending": True}
    trine.testing.replay(worker, history([step("charge"), pending], status="suspended"))
    assert reached == []


def test_a_history_is_read_from_json_text_bytes_a_path_or_a_list(tmp_path: Path) -> None:
    text = json.dumps(WITHOUT_PATCH)
    path = tmp_path / "history.json"
    path.write_text(text)
    worker = order_worker("patched")
    trine.testing.replay(worker, text)
    trine.testing.replay(worker, text.encode())
    trine.testing.replay(worker, str(path))
    trine.testing.replay(worker, [path, WITH_PATCH, json.dumps([WITHOUT_PATCH])])
    with pytest.raises(trine.NonDeterminismError):
        trine.testing.replay(order_worker("unguarded"), [WITH_PATCH, path])


def test_an_unknown_format_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'trine.history/9'.*'trine.history/1'"):
        trine.testing.replay(
            order_worker("patched"), {**WITHOUT_PATCH, "format": "trine.history/9"}
        )


def test_a_function_the_worker_does_not_serve_is_a_value_error_before_any_replay() -> None:
    elsewhere = history([step("charge")], function="refund")
    with pytest.raises(ValueError, match=r"function 'refund'.*serves 'order'"):
        # The first history would fail: the check of every history comes before any replay.
        trine.testing.replay(order_worker("unguarded"), [WITHOUT_PATCH, elsewhere])


def test_an_unreadable_history_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot read the history"):
        trine.testing.replay(order_worker("patched"), "/nonexistent/history.json")
    with pytest.raises(ValueError, match="kind 'nap'"):
        trine.testing.replay(order_worker("patched"), history([{"kind": "nap", "name": "x"}]))


async def test_replay_can_be_called_from_a_running_event_loop() -> None:
    trine.testing.replay(order_worker("patched"), WITHOUT_PATCH)
    with pytest.raises(trine.NonDeterminismError):
        trine.testing.replay(order_worker("unguarded"), WITHOUT_PATCH)


async def test_a_journal_a_worker_wrote_replays_as_the_worker_would_replay_it(
    coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()
    real = order_worker("patched")
    worker.function(real.functions["order"].fn, name="order")
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r-1", "order"))
    await coordinator.until(lambda: session.finished("r-1"))
    ran.clear()  # the real run ran its steps; the replays below must not

    journal: list[dict[str, Any]] = []
    for kind, value in session.commands("r-1"):
        if kind == "step_completed":
            output = json.loads(value.entry.output)
            journal.append({"kind": "step", "name": value.entry.name, "output": output})
        elif kind == "patched":
            journal.append({"kind": "patch", "name": value.change_id})
    assert [e["name"] for e in journal] == ["charge", "send-receipt", "send_receipt", "ship"]
    written = history(journal)
    trine.testing.replay(order_worker("patched"), written)
    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(order_worker("original"), written)
    assert (caught.value.index, caught.value.expected) == (1, "patch 'send-receipt'")
