"""A worker serving ``order``: three durable steps (validate, charge, ship), then a summary.

The same workload as the benchmark peers (validate, charge and ship each take the order; the
result is ``{"order_id", "status": "completed", "steps": [s1, s2, s3]}``), so runs can be compared
like for like. Run it next to ``trine --target=all``::

    python examples/order_worker.py [--max-concurrency N]

Environment, for the crash tests:

- ``TRINE_WORKER_ADDR``: the coordinator (default ``127.0.0.1:7481``).
- ``ORDER_SIDE_EFFECT_LOG=path``: append ``exec <run_id> <step>`` each time a step body really
  executes, and ``ack <run_id> <step>`` once the step's result is known to be durable: when
  ``ctx.step`` answered it from the journal, or when the next step's body starts (the SDK makes
  every result the workflow has seen durable before a step body runs; a result it returned may
  still be on its way until then). A step executed again after its ack would be a broken
  promise; the tests look for exactly that.
- ``ORDER_STEP_DELAY_S=seconds``: each step body sleeps this long, so a test can kill mid-step.
- ``ORDER_SYNC_STEPS=1``: the step bodies are sync functions (run in the worker's step threads)
  instead of async ones (awaited on its event loop), to compare the two.
- ``ORDER_TYPED=1``: the same workload typed with pydantic models, to measure typed conversion
  against plain dicts (``bench/converter.py``): the workflow takes an ``Order`` (its ``items`` a
  list of ``Item``), each step body takes it and returns a ``Validated``, ``Charged`` or
  ``Shipped``, and the workflow returns an ``OrderResult``. The input, the step outputs and the
  result are the same JSON as without it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import pydantic

import trine

OrderDict = dict[str, Any]

STEP_DELAY_S = float(os.environ.get("ORDER_STEP_DELAY_S", "0") or 0)
SYNC_STEPS = os.environ.get("ORDER_SYNC_STEPS", "") not in ("", "0")
TYPED = os.environ.get("ORDER_TYPED", "") not in ("", "0")
_effects_path = os.environ.get("ORDER_SIDE_EFFECT_LOG")
# Line-buffered append: each line reaches the file as one write, even with other processes
# appending to the same file.
EFFECTS: TextIO | None = open(_effects_path, "a", buffering=1) if _effects_path else None  # noqa: SIM115


def record(kind: str, run_id: str, step: str) -> None:
    if EFFECTS is not None:
        EFFECTS.write(f"{kind} {run_id} {step}\n")
        EFFECTS.flush()


# -- the workload's step bodies (pure and tiny) --------------------------------------------------


def step_validate(order: OrderDict) -> OrderDict:
    return {"step": "validate", "order_id": order["order_id"], "ok": len(order["items"]) > 0}


def step_charge(order: OrderDict) -> OrderDict:
    return {
        "step": "charge",
        "order_id": order["order_id"],
        "charged": order["amount"],
        "txn": "txn-" + order["order_id"],
    }


def step_ship(order: OrderDict) -> OrderDict:
    return {"step": "ship", "order_id": order["order_id"], "tracking": "trk-" + order["order_id"]}


# -- the workflow --------------------------------------------------------------------------------

worker = trine.Worker()


def executing(ctx: trine.Context, name: str, returned: list[str]) -> None:
    """A step body starts: the results returned before it are durable now; then it executes."""
    for earlier in returned:
        record("ack", ctx.run_id, earlier)
    returned.clear()
    record("exec", ctx.run_id, name)


def returned_now(ctx: trine.Context, name: str, replayed: bool, returned: list[str]) -> None:
    """``ctx.step`` returned: a replayed result is durable (the journal had it); a new one is
    once the next body starts."""
    if replayed:
        record("ack", ctx.run_id, name)
    else:
        returned.append(name)


async def durable(
    ctx: trine.Context,
    name: str,
    body: Callable[[OrderDict], OrderDict],
    order: OrderDict,
    returned: list[str],
) -> OrderDict:
    """``ctx.step`` around ``body``, recording when it executes and when its result is durable
    (``returned``: the run's results not known durable yet)."""

    async def execute(order: OrderDict) -> OrderDict:
        executing(ctx, name, returned)
        if STEP_DELAY_S > 0:
            await asyncio.sleep(STEP_DELAY_S)
        return body(order)

    def execute_sync(order: OrderDict) -> OrderDict:
        executing(ctx, name, returned)
        if STEP_DELAY_S > 0:
            time.sleep(STEP_DELAY_S)  # in a step thread: blocks nothing else
        return body(order)

    replayed = ctx.replaying
    result: OrderDict = await ctx.step(name, execute_sync if SYNC_STEPS else execute, order)
    returned_now(ctx, name, replayed, returned)
    return result


async def order(ctx: trine.Context, order: OrderDict) -> OrderDict:
    returned: list[str] = []
    s1 = await durable(ctx, "validate", step_validate, order, returned)
    s2 = await durable(ctx, "charge", step_charge, order, returned)
    s3 = await durable(ctx, "ship", step_ship, order, returned)
    return {"order_id": order["order_id"], "status": "completed", "steps": [s1, s2, s3]}


# -- the typed variant (ORDER_TYPED=1): the same JSON, as pydantic models -----------------------


class Item(pydantic.BaseModel):
    sku: str
    qty: int


class Order(pydantic.BaseModel):
    order_id: str
    customer: str
    items: list[Item]
    amount: float


# The fields in the order of the dict variant's keys, so the JSON is the same.
class Validated(pydantic.BaseModel):
    step: str
    order_id: str
    ok: bool


class Charged(pydantic.BaseModel):
    step: str
    order_id: str
    charged: float
    txn: str


class Shipped(pydantic.BaseModel):
    step: str
    order_id: str
    tracking: str


class OrderResult(pydantic.BaseModel):
    order_id: str
    status: str
    steps: tuple[Validated, Charged, Shipped]


def typed_validate(order: Order) -> Validated:
    return Validated(step="validate", order_id=order.order_id, ok=len(order.items) > 0)


def typed_charge(order: Order) -> Charged:
    return Charged(
        step="charge", order_id=order.order_id, charged=order.amount, txn="txn-" + order.order_id
    )


def typed_ship(order: Order) -> Shipped:
    return Shipped(step="ship", order_id=order.order_id, tracking="trk-" + order.order_id)


R = TypeVar("R", bound=pydantic.BaseModel)


async def durable_typed(
    ctx: trine.Context, name: str, body: Callable[[Order], R], order: Order, returned: list[str]
) -> R:
    """``durable`` for a typed body. The step function declares the body's types
    (``functools.wraps`` copies its annotations), so its output comes back as the body's model."""

    async def execute(order: Order) -> R:
        executing(ctx, name, returned)
        if STEP_DELAY_S > 0:
            await asyncio.sleep(STEP_DELAY_S)
        return body(order)

    def execute_sync(order: Order) -> R:
        executing(ctx, name, returned)
        if STEP_DELAY_S > 0:
            time.sleep(STEP_DELAY_S)  # in a step thread: blocks nothing else
        return body(order)

    replayed = ctx.replaying
    if SYNC_STEPS:
        result = await ctx.step(name, functools.wraps(body)(execute_sync), order)
    else:
        result = await ctx.step(name, functools.wraps(body)(execute), order)
    returned_now(ctx, name, replayed, returned)
    return result


async def order_typed(ctx: trine.Context, order: Order) -> OrderResult:
    returned: list[str] = []
    s1 = await durable_typed(ctx, "validate", typed_validate, order, returned)
    s2 = await durable_typed(ctx, "charge", typed_charge, order, returned)
    s3 = await durable_typed(ctx, "ship", typed_ship, order, returned)
    return OrderResult(order_id=order.order_id, status="completed", steps=(s1, s2, s3))


RETRY = trine.RetryPolicy(max_attempts=5)
if TYPED:
    worker.function(name="order", retry=RETRY)(order_typed)
else:
    worker.function(retry=RETRY)(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--max-concurrency", type=int, default=100, help="runs in flight at once (default 100)"
    )
    args = parser.parse_args()
    worker.max_concurrency = args.max_concurrency
    worker.run()


if __name__ == "__main__":
    main()
