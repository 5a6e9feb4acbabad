"""Typed inputs and outputs: a workflow's input, a step's output, a child's result and a signal's
payload come back as the types the code declares (pydantic models, dataclasses, TypedDicts),
the first time and on every replay; a value that does not fit fails with an error naming the
function, the step and the type."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pydantic
import pytest
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

import trine
from trine_proto.trine.v1 import EntryKind


class Order(pydantic.BaseModel):
    sku: str
    qty: int


class Receipt(pydantic.BaseModel):
    order: Order
    charged_at: datetime
    total: float


@dataclasses.dataclass
class Approval:
    by: str
    ok: bool


class Line(TypedDict):
    sku: str
    qty: int


def charge(order: Order) -> Receipt:
    return Receipt(order=order, charged_at=datetime(2026, 1, 2, tzinfo=UTC), total=9.5 * order.qty)


async def run_once(coordinator, make_worker, serve, item, workflow, input, **item_kw):
    """Serve ``workflow`` as ``wf``, run it once, and return the run's commands."""
    worker = make_worker()
    worker.function(name="wf")(workflow)
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf", input, **item_kw))
    await coordinator.until(lambda: session.finished("r1"))
    return session.commands("r1")


async def test_a_model_input_and_step_output_come_back_as_their_types(
    coordinator, make_worker, serve, item
) -> None:
    seen: list[Any] = []

    async def wf(ctx: trine.Context, order: Order) -> Receipt:
        seen.append(order)
        receipt = await ctx.step("charge", charge, order)
        seen.append(receipt)
        return receipt

    commands = await run_once(coordinator, make_worker, serve, item, wf, {"sku": "A-1", "qty": "2"})
    assert seen[0] == Order(sku="A-1", qty=2)  # "2" is a valid int (lax, as FastAPI)
    assert isinstance(seen[1], Receipt)
    assert seen[1].total == 19.0
    [completed] = [value for kind, value in commands if kind == "step_completed"]
    assert json.loads(completed.entry.output) == {
        "order": {"sku": "A-1", "qty": 2},
        "charged_at": "2026-01-02T00:00:00Z",
        "total": 19.0,
    }
    assert json.loads(commands[-1][1].result) == json.loads(completed.entry.output)


async def test_a_replayed_step_output_is_its_declared_type(
    coordinator, make_worker, serve, item, entry
) -> None:
    seen: list[Any] = []

    async def wf(ctx: trine.Context, order: Order) -> float:
        receipt = await ctx.step("charge", charge, order)
        seen.append(receipt)
        return receipt.total

    journaled = {"order": {"sku": "A", "qty": 1}, "charged_at": "2026-01-02T00:00:00Z", "total": 3}
    commands = await run_once(
        coordinator,
        make_worker,
        serve,
        item,
        wf,
        {"sku": "A", "qty": 1},
        journal=[entry(0, "charge", journaled)],
    )
    assert isinstance(seen[0], Receipt)
    assert seen[0].charged_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert [kind for kind, _ in commands] == ["run_completed"]  # the step did not run again
    assert json.loads(commands[-1][1].result) == 3.0


async def test_a_wrong_input_fails_the_run_naming_workflow_and_type(
    coordinator, make_worker, serve, item
) -> None:
    async def wf(ctx: trine.Context, order: Order) -> None:
        raise AssertionError("never called")

    commands = await run_once(coordinator, make_worker, serve, item, wf, {"sku": "A", "qty": "x"})
    kind, failed = commands[-1]
    assert kind == "run_failed"
    assert failed.error.type == "ConversionError"
    assert not failed.error.retryable
    assert failed.error.message.startswith("the input of workflow 'wf' is not a valid Order: qty:")
    assert "valid integer" in failed.error.message


async def test_a_step_output_that_does_not_fit_its_annotation_fails_the_step_at_once(
    coordinator, make_worker, serve, item
) -> None:
    def lookup() -> Order:
        return {"sku": "A"}  # type: ignore[return-value] - the mistake under test

    async def wf(ctx: trine.Context, _: None) -> str:
        try:
            await ctx.step("lookup", lookup)
        except trine.StepError as error:
            return error.message
        return "no error"

    commands = await run_once(coordinator, make_worker, serve, item, wf, None)
    [failed] = [value for kind, value in commands if kind == "step_failed"]
    assert (failed.error.type, failed.error.retryable) == ("ConversionError", False)
    message = json.loads(commands[-1][1].result)
    assert message.startswith(
        "the output of step 'lookup' of workflow 'wf' is not a valid Order: qty: Field required"
    )


async def test_dataclass_and_typeddict_inputs_signal_payloads_and_children(
    coordinator, make_worker, serve, item, wait_entry
) -> None:
    seen: list[Any] = []
    worker = make_worker()

    @worker.function(name="child-wf")
    async def child(ctx: trine.Context, line: Line) -> Order:
        return Order(**line)

    @worker.function
    async def parent(ctx: trine.Context, lines: list[Line]) -> dict[str, Any]:
        approval = await ctx.wait_for_signal("approve", Approval)
        made = await ctx.run(child, lines[0])
        seen.extend([lines, approval, made])
        return {"by": approval.by, "order": made}

    serve(worker)
    session = await coordinator.registered()
    journal = [
        wait_entry(0, EntryKind.SIGNAL, "approve", {"by": "ana", "ok": True}),
        wait_entry(1, EntryKind.CHILD, "child-wf", {"sku": "B", "qty": 4}),
    ]
    session.dispatch(item("r1", "parent", [{"sku": "B", "qty": 4}], journal=journal))
    await coordinator.until(lambda: session.finished("r1"))
    assert seen == [[{"sku": "B", "qty": 4}], Approval(by="ana", ok=True), Order(sku="B", qty=4)]
    assert json.loads(session.commands("r1")[-1][1].result) == {
        "by": "ana",
        "order": {"sku": "B", "qty": 4},
    }


async def test_a_child_started_by_function_goes_by_its_registered_name(
    coordinator, make_worker, serve, item, waits_suspend
) -> None:
    coordinator.ack_policy = waits_suspend
    worker = make_worker()

    @worker.function(name="child-wf")
    async def child(ctx: trine.Context, order: Order) -> None:
        pass

    @worker.function
    async def parent(ctx: trine.Context, _: None) -> None:
        await ctx.run(child, Order(sku="C", qty=1))

    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "parent"))
    await coordinator.until(lambda: any(k == "start_child" for k, _ in session.commands("r1")))
    [start] = [value for kind, value in session.commands("r1") if kind == "start_child"]
    assert (start.function, json.loads(start.input)) == ("child-wf", {"sku": "C", "qty": 1})


async def test_a_signal_payload_that_does_not_fit_names_the_signal_and_type(
    coordinator, make_worker, serve, item, wait_entry
) -> None:
    async def wf(ctx: trine.Context, _: None) -> None:
        await ctx.wait_for_signal("approve", Approval)

    journal = [wait_entry(0, EntryKind.SIGNAL, "approve", {"by": "ana"})]
    commands = await run_once(coordinator, make_worker, serve, item, wf, None, journal=journal)
    kind, failed = commands[-1]
    assert kind == "run_failed"
    assert failed.error.type == "ConversionError"
    expected = "the payload of signal 'approve' in workflow 'wf' is not a valid Approval"
    assert failed.error.message.startswith(f"{expected}: ok: Field required")


def test_the_converter_keeps_plain_json_as_it_was_and_encodes_structured_values() -> None:
    converter = trine.PydanticConverter()
    plain = {"b": [1, 2.5, None, True], "a": "é"}
    assert (
        converter.to_json(plain, "x")
        == json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()
    )
    value = {
        "id": UUID(int=1),
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "order": Order(sku="A", qty=1),
    }
    assert json.loads(converter.to_json(value, "x")) == {
        "id": "00000000-0000-0000-0000-000000000001",
        "at": "2026-01-01T00:00:00Z",
        "order": {"sku": "A", "qty": 1},
    }
    assert converter.from_json(b'{"sku":"A","qty":1}', Order, "x") == Order(sku="A", qty=1)
    assert converter.from_json(b"", None, "x") is None
    with pytest.raises(trine.ConversionError, match=r"the result is not a valid list\[int\]"):
        converter.from_json(b'["a"]', list[int], "the result")


def test_step_closures_share_one_cached_return_type_and_are_not_kept_alive() -> None:
    import gc
    import weakref

    from trine._declared import return_type

    def make(payload: object) -> Any:
        def body() -> Order:
            return payload  # type: ignore[return-value]

        return body

    first, second = make(1), make(2)
    assert return_type(first) is Order
    assert return_type(second) is Order
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None  # the cache holds no closure
