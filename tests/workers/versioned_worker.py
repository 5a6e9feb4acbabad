"""Workflows whose code changes between builds, for tests/test_versioning.py.

``VERSIONED_CODE`` picks the code this process serves (its build id comes from ``TRINE_BUILD_ID``):

- ``renewal``: step ``open``, a durable sleep, step ``close``. Code ``v1`` is the original; ``v2``
  adds a ``receipt`` step before the sleep behind ``ctx.patched("add-receipt")``; ``v2-unguarded``
  adds it without the guard (the change the replay check must catch).
- ``pinned_flow`` (versioning ``pinned``): step ``open``, a wait for the signal ``go``, and the
  build that finished it as the result.
- ``checkout``: step ``reserve``, then step ``charge``, which fails for good under code ``buggy``
  and succeeds under ``fixed``; each real execution of a step is appended to
  ``VERSIONED_EFFECTS`` (``<run_id> <step>``).
- ``importer``: a step, then workflow code that raises ``KeyError`` outside any step under code
  ``buggy`` (a workflow error: the run is blocked) and returns under ``fixed``.
"""

from __future__ import annotations

import os
from typing import Any

import trine

EFFECTS = os.environ.get("VERSIONED_EFFECTS")


def executed(run_id: str, step: str) -> None:
    if EFFECTS:
        with open(EFFECTS, "a") as out:
            out.write(f"{run_id} {step}\n")


def make_worker(code: str) -> trine.Worker:
    """The worker of one version of the code (tests replay histories against several)."""
    worker = trine.Worker()

    @worker.function
    async def renewal(ctx: trine.Context, sleep_s: float) -> list[str]:
        taken = [await ctx.step("open", lambda: "open")]
        if code == "v2-unguarded" or (code == "v2" and ctx.patched("add-receipt")):
            taken.append(await ctx.step("receipt", lambda: "receipt"))
        await ctx.sleep(sleep_s)
        taken.append(await ctx.step("close", lambda: "close"))
        return taken

    @worker.function(versioning="pinned")
    async def pinned_flow(ctx: trine.Context, _: Any) -> str:
        await ctx.step("open", lambda: "open")
        await ctx.wait_for_signal("go")
        return await ctx.step("close", lambda: os.environ.get("TRINE_BUILD_ID", ""))

    @worker.function
    async def checkout(ctx: trine.Context, _: Any) -> str:
        def reserve() -> str:
            executed(ctx.run_id, "reserve")
            return "reserved"

        def charge() -> str:
            executed(ctx.run_id, "charge")
            if code == "buggy":
                raise trine.NonRetryableError("the card processor rejected the request")
            return "charged"

        await ctx.step("reserve", reserve)
        return await ctx.step("charge", charge)

    @worker.function
    async def importer(ctx: trine.Context, rows: dict[str, int]) -> int:
        await ctx.step("fetch", lambda: len(rows))
        if code == "buggy":
            return rows["missing"]  # a bug in the workflow's own code, outside any step
        return sum(rows.values())

    return worker


WORKER = make_worker(os.environ.get("VERSIONED_CODE", "v1"))
WORKER_V1 = make_worker("v1")
WORKER_V2 = make_worker("v2")
WORKER_V2_UNGUARDED = make_worker("v2-unguarded")

if __name__ == "__main__":
    WORKER.run()
