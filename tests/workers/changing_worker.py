"""A worker whose code changes between deployments: ``CHANGING_VERSION=1`` takes step ``a`` then
waits for the signal ``go``; version 2 takes step ``b`` first. A run started on version 1 and
resumed on version 2 must fail with a non-determinism error naming both steps."""

from __future__ import annotations

import os
from typing import Any

import trine

VERSION = os.environ.get("CHANGING_VERSION", "1")
worker = trine.Worker()


@worker.function
async def changing(ctx: trine.Context, _: Any) -> str:
    await ctx.step("a" if VERSION == "1" else "b", lambda: VERSION)
    await ctx.wait_for_signal("go")
    return "done"


if __name__ == "__main__":
    worker.run()
