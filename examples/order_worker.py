"""A worker serving ``order``: three durable steps (validate, charge, ship), then a summary.

The same workload as the benchmark peers (validate, charge and ship each take the order; the
result is ``{"order_id", "status": "completed", "steps": [s1, s2, s3]}``), so runs can be compared
like for like. Run it next to ``trine --target=all``::

    python examples/order_worker.py [--max-concurrency N]

Environment, for the crash tests:

- ``TRINE_WORKER_ADDR``: the coordinator (default ``127.0.0.1:7481``).
- ``ORDER_SIDE_EFFECT_LOG=path``: append ``exec <run_id> <step>`` each time a step body really
  executes, and ``ack <run_id> <step>`` once ``ctx.step`` returned (its result is durable). A step
  executed again after its ack would be a broken promise; the tests look for exactly that.
- ``ORDER_STEP_DELAY_S=seconds``: each step body sleeps this long, so a test can kill mid-step.
- ``ORDER_SYNC_STEPS=1``: the step bodies are sync functions (run in the worker's step threads)
  instead of async ones (awaited on its event loop), to compare the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

import trine

Order = dict[str, Any]

STEP_DELAY_S = float(os.environ.get("ORDER_STEP_DELAY_S", "0") or 0)
SYNC_STEPS = os.environ.get("ORDER_SYNC_STEPS", "") not in ("", "0")
_effects_path = os.environ.get("ORDER_SIDE_EFFECT_LOG")
# Line-buffered append: each line reaches the file as one write, even with other processes
# appending to the same file.
EFFECTS: TextIO | None = open(_effects_path, "a", buffering=1) if _effects_path else None  # noqa: SIM115


def record(kind: str, run_id: str, step: str) -> None:
    if EFFECTS is not None:
        EFFECTS.write(f"{kind} {run_id} {step}\n")
        EFFECTS.flush()


# -- the workload's step bodies (pure and tiny) --------------------------------------------------


def step_validate(order: Order) -> Order:
    return {"step": "validate", "order_id": order["order_id"], "ok": len(order["items"]) > 0}


def step_charge(order: Order) -> Order:
    return {
        "step": "charge",
        "order_id": order["order_id"],
        "charged": order["amount"],
        "txn": "txn-" + order["order_id"],
    }


def step_ship(order: Order) -> Order:
    return {"step": "ship", "order_id": order["order_id"], "tracking": "trk-" + order["order_id"]}


# -- the workflow --------------------------------------------------------------------------------

worker = trine.Worker()


async def durable(
    ctx: trine.Context, name: str, body: Callable[[Order], Order], order: Order
) -> Order:
    """``ctx.step`` around ``body``, recording when it executes and when its result is durable."""

    async def execute(order: Order) -> Order:
        record("exec", ctx.run_id, name)
        if STEP_DELAY_S > 0:
            await asyncio.sleep(STEP_DELAY_S)
        return body(order)

    def execute_sync(order: Order) -> Order:
        record("exec", ctx.run_id, name)
        if STEP_DELAY_S > 0:
            time.sleep(STEP_DELAY_S)  # in a step thread: blocks nothing else
        return body(order)

    result: Order = await ctx.step(name, execute_sync if SYNC_STEPS else execute, order)
    record("ack", ctx.run_id, name)
    return result


@worker.function(retry=trine.RetryPolicy(max_attempts=5))
async def order(ctx: trine.Context, order: Order) -> Order:
    s1 = await durable(ctx, "validate", step_validate, order)
    s2 = await durable(ctx, "charge", step_charge, order)
    s3 = await durable(ctx, "ship", step_ship, order)
    return {"order_id": order["order_id"], "status": "completed", "steps": [s1, s2, s3]}


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
