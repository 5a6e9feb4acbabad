"""Workers for ``trine replay`` tests (``--worker replay_workers:same``): each serves ``order``,
whose runs in the tests journal the step ``charge`` and end (:meth:`served.Served.finish`)."""

from __future__ import annotations

from typing import Any

import trine


async def charge() -> dict[str, int]:
    return {"charged": 5}


async def refund() -> dict[str, int]:
    return {"refunded": 5}


same = trine.Worker(build_id="b-same")
"""The code that wrote the runs: every run replays."""


@same.function(name="order")
async def order_same(ctx: trine.Context, data: Any) -> str:
    await ctx.step("charge", charge)
    return "done"


@same.function(name="approval")
async def approval(ctx: trine.Context, data: Any) -> str:
    return "approved"


changed = trine.Worker(build_id="b-changed")
"""A change the runs cannot replay: a step before ``charge``, not guarded by ``ctx.patched``."""


@changed.function(name="order")
async def order_changed(ctx: trine.Context, data: Any) -> str:
    await ctx.step("refund", refund)
    await ctx.step("charge", charge)
    return "done"


not_a_worker = "order"
