"""A worker whose steps block: ``sync_sleep`` takes a sync step that sleeps (a sync HTTP client or
LLM SDK stands in), ``async_block`` an async step that wrongly blocks the event loop.

Input: ``{"seconds": s}``. With ``BLOCKING_SIDE_EFFECT_LOG=path`` each step body appends
``exec <run_id> <step>`` when it really executes, so a test can count executions.
"""

from __future__ import annotations

import os
import time
from typing import Any, TextIO

import trine

_effects_path = os.environ.get("BLOCKING_SIDE_EFFECT_LOG")
# Line-buffered append: each line reaches the file as one write.
EFFECTS: TextIO | None = open(_effects_path, "a", buffering=1) if _effects_path else None  # noqa: SIM115

worker = trine.Worker()


def record(run_id: str, step: str) -> None:
    if EFFECTS is not None:
        EFFECTS.write(f"exec {run_id} {step}\n")
        EFFECTS.flush()


@worker.function
async def sync_sleep(ctx: trine.Context, data: dict[str, Any]) -> str:
    def sleep(seconds: float) -> str:
        record(ctx.run_id, "sleep")
        time.sleep(seconds)  # blocks its step thread only: heartbeats go on
        return f"slept {seconds:g}s"

    return str(await ctx.step("sleep", sleep, data["seconds"]))


@worker.function
async def async_block(ctx: trine.Context, data: dict[str, Any]) -> str:
    async def block(seconds: float) -> str:
        record(ctx.run_id, "block")
        time.sleep(seconds)  # noqa: ASYNC251 - the mistake the lag warning is for
        return f"blocked {seconds:g}s"

    return str(await ctx.step("block", block, data["seconds"]))


if __name__ == "__main__":
    worker.run()
