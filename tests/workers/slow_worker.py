"""A worker whose runs are slow while the worker stays alive (issue 10: the coordinator never
re-dispatches in a loop a run whose worker is alive but slow).

- ``slow_step``: one async step that awaits ``asyncio.sleep(seconds)``: the event loop stays free,
  heartbeats flow, and the step outlives several lease TTLs.
- ``block_loop``: one async step that wrongly blocks the event loop with ``time.sleep(seconds)``:
  no heartbeat goes out meanwhile, so the coordinator drops the worker every time it runs.

Input: ``{"seconds": s}``. With ``SLOW_SIDE_EFFECT_LOG=path`` the workflow appends
``dispatch <run_id> <attempt>`` each time an attempt of it starts, and each step body appends
``exec <run_id> <step>`` when it really executes, so a test counts dispatches and executions.
The worker's id is ``slow-worker``; ``SLOW_MAX_CONCURRENCY`` (default 100) bounds its runs in
flight.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TextIO

import trine

_effects_path = os.environ.get("SLOW_SIDE_EFFECT_LOG")
# Line-buffered append: each line reaches the file as one write.
EFFECTS: TextIO | None = open(_effects_path, "a", buffering=1) if _effects_path else None  # noqa: SIM115

WORKER_ID = "slow-worker"
worker = trine.Worker(
    worker_id=WORKER_ID, max_concurrency=int(os.environ.get("SLOW_MAX_CONCURRENCY", "100"))
)


def record(*words: object) -> None:
    if EFFECTS is not None:
        EFFECTS.write(" ".join(str(w) for w in words) + "\n")
        EFFECTS.flush()


@worker.function
async def slow_step(ctx: trine.Context, data: dict[str, Any]) -> str:
    record("dispatch", ctx.run_id, ctx.attempt)

    async def wait(seconds: float) -> str:
        record("exec", ctx.run_id, "wait")
        await asyncio.sleep(seconds)  # the loop is free: heartbeats go on
        return f"waited {seconds:g}s"

    return str(await ctx.step("wait", wait, data["seconds"]))


@worker.function
async def block_loop(ctx: trine.Context, data: dict[str, Any]) -> str:
    record("dispatch", ctx.run_id, ctx.attempt)

    async def block(seconds: float) -> str:
        record("exec", ctx.run_id, "block")
        time.sleep(seconds)  # noqa: ASYNC251 - the mistake: no heartbeat while it sleeps
        return f"blocked {seconds:g}s"

    return str(await ctx.step("block", block, data["seconds"]))


if __name__ == "__main__":
    worker.run()
