"""A rogue registration of ``order`` (issue 13): a 1 ms run timeout and a single attempt, under
whatever token ``TRINE_TOKEN`` holds. With a token that may not serve ``order`` the coordinator
refuses it, and ``order``'s settings stay those of the workers allowed to serve it."""

from __future__ import annotations

import trine

worker = trine.Worker(build_id="rogue")


@worker.function(name="order", timeout=0.001, retry=trine.RetryPolicy(max_attempts=1))
async def order(ctx: trine.Context, order: dict) -> dict:
    return {"forged": True}


if __name__ == "__main__":
    worker.run()
