"""A worker serving ``sleeper`` for bench/waits.py: one durable sleep, then return.

``sleeper`` takes ``{"until_ms": <ms since the epoch>}``, sleeps until then with
``ctx.sleep_until`` (the run is suspended and holds no worker slot meanwhile), and returns
``until_ms``, so the bench can check every run it reads back.

    python bench/sleeper_worker.py
"""

from __future__ import annotations

from typing import Any

import trine

worker = trine.Worker()  # the default max concurrency


@worker.function
async def sleeper(ctx: trine.Context, spec: dict[str, Any]) -> int:
    until_ms = int(spec["until_ms"])
    await ctx.sleep_until(until_ms / 1000)
    return until_ms


if __name__ == "__main__":
    worker.run()
