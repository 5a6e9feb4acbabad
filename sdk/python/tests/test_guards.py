"""Guard rails: a coroutine, a generator or any other value that is not JSON, returned by a step
or a workflow (or sent as event data or a child's input), fails with an error naming it, where it
is, and the fix; a forgotten ``await`` says so, and its coroutine is closed (``filterwarnings =
error`` turns the RuntimeWarning an unclosed one would give into a failure)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import trine


async def fetch() -> str:
    return "data"


def numbers():  # a generator function
    yield 1


async def run_one(coordinator, make_worker, serve, item, workflow) -> list[tuple[str, Any]]:
    """Serve ``workflow`` as ``wf``, run it once, and return the run's commands."""
    worker = make_worker()
    worker.function(name="wf")(workflow)
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "wf"))
    await coordinator.until(lambda: session.finished("r1"))
    return session.commands("r1")


async def step_error(coordinator, make_worker, serve, item, fn) -> Any:
    """The ``StepError`` a step running ``fn`` fails with (and that it was not retried)."""

    async def workflow(ctx: trine.Context, _: None) -> dict[str, Any]:
        try:
            await ctx.step("s", fn)
        except trine.StepError as error:
            return {"type": error.type, "message": str(error)}
        return {}

    commands = await run_one(coordinator, make_worker, serve, item, workflow)
    failed = next(v for k, v in commands if k == "step_failed")
    assert not failed.error.retryable  # the same output again: not worth a retry
    return json.loads(commands[-1][1].result)


async def test_an_async_step_returning_a_coroutine_says_forget_await(
    coordinator, make_worker, serve, item
) -> None:
    async def forgetful() -> Any:
        return fetch()  # the mistake: no await

    error = await step_error(coordinator, make_worker, serve, item, forgetful)
    assert error["type"] == "TypeError"
    assert "the output of step 's' of workflow 'wf' is not JSON-serializable" in error["message"]
    assert "it is a coroutine (fetch)" in error["message"]
    assert "did you forget `await`?" in error["message"]


async def test_a_lambda_calling_async_code_is_awaited_not_refused(
    coordinator, make_worker, serve, item
) -> None:
    async def workflow(ctx: trine.Context, _: None) -> Any:
        return await ctx.step("s", lambda: fetch())  # a call-through: its coroutine is awaited

    commands = await run_one(coordinator, make_worker, serve, item, workflow)
    assert json.loads(commands[-1][1].result) == "data"


async def test_a_coroutine_awaited_to_a_coroutine_says_forget_await(
    coordinator, make_worker, serve, item
) -> None:
    async def forgetful() -> Any:
        return fetch()

    error = await step_error(coordinator, make_worker, serve, item, lambda: forgetful())
    assert "it is a coroutine (fetch)" in error["message"]


async def test_a_step_returning_a_generator_says_return_a_list(
    coordinator, make_worker, serve, item
) -> None:
    error = await step_error(coordinator, make_worker, serve, item, numbers)
    assert "it is a generator (numbers)" in error["message"]
    assert "list(...)" in error["message"]


async def test_a_step_returning_an_object_names_its_type_and_place(
    coordinator, make_worker, serve, item
) -> None:
    class Receipt:  # neither a model nor a dataclass: no converter knows its JSON form
        def __init__(self, amount: int) -> None:
            self.amount = amount

    error = await step_error(
        coordinator, make_worker, serve, item, lambda: {"receipts": [1, Receipt(3)]}
    )
    assert "its item ['receipts'][1] is a Receipt (" in error["message"]
    assert "pydantic models, dataclasses" in error["message"]


async def test_a_workflow_returning_a_coroutine_fails_with_forget_await(
    coordinator, make_worker, serve, item
) -> None:
    async def workflow(ctx: trine.Context, _: None) -> Any:
        return {"id": ctx.uuid()}  # the mistake from the issue: no await

    commands = await run_one(coordinator, make_worker, serve, item, workflow)
    kind, failed = commands[-1]
    assert kind == "run_failed"
    assert failed.error.type == "TypeError"
    assert not failed.error.retryable
    message = failed.error.message
    assert "the result of workflow 'wf' is not JSON-serializable" in message
    assert "its item ['id'] is a coroutine (Context.uuid)" in message
    assert "did you forget `await`?" in message


async def test_a_workflow_returning_a_generator_fails_naming_it(
    coordinator, make_worker, serve, item
) -> None:
    async def workflow(ctx: trine.Context, _: None) -> Any:
        return (n for n in range(3))

    commands = await run_one(coordinator, make_worker, serve, item, workflow)
    assert "it is a generator (<genexpr>)" in commands[-1][1].error.message


async def test_event_data_and_child_input_are_guarded_too(
    coordinator, make_worker, serve, item
) -> None:
    async def workflow(ctx: trine.Context, _: None) -> list[str]:
        messages = []
        try:
            await ctx.emit("progress", {"at": fetch()})
        except TypeError as error:
            messages.append(str(error))
        try:
            await ctx.run("child", {1, 2})
        except TypeError as error:
            messages.append(str(error))
        return messages

    commands = await run_one(coordinator, make_worker, serve, item, workflow)
    emitted, child = json.loads(commands[-1][1].result)
    assert "the data of event 'progress'" in emitted
    assert "its item ['at'] is a coroutine (fetch)" in emitted
    assert "the input of child run 0 ('child')" in child
    assert "it is a set ({1, 2})" in child


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, "it is nan, which JSON cannot represent"),
        ({(1, 2): "x"}, "it is a dict with a tuple key (1, 2)"),
        ([1, 2j], "its item [1] is a complex (2j)"),
        ([numbers(), numbers()], "its item [0] is a generator (numbers) (1 more such values"),
    ],
)
def test_the_message_names_the_first_offender(value: Any, expected: str) -> None:
    with pytest.raises(TypeError) as raised:
        trine.PydanticConverter().to_json(value, "the output of step 'x'")
    assert expected in str(raised.value)


def test_a_circular_value_is_named_not_recursed_forever() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(TypeError, match=r"its item \[1\] is the container it is in"):
        trine.PydanticConverter().to_json(loop, "the result")
