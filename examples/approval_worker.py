"""A worker serving ``approval``: open a ticket, sleep, wait for a human's ``approve`` signal.

Input: ``{"request": ..., "sleep_s": seconds, "timeout_s": seconds or null}``. The run

1. opens a ticket (a durable step: never repeated once journaled);
2. sleeps ``sleep_s`` seconds durably (the run is suspended, no worker slot is held, and the
   timer survives restarts of every process);
3. waits for the signal ``approve`` (``POST /v1/runs/{id}/signals/approve`` with a JSON body),
   up to ``timeout_s`` seconds when given; a signal sent earlier, even during the sleep, is kept
   and taken at once;
4. returns ``{"ticket", "approved": true, "approval": <the signal's payload>}``, or
   ``"approved": false`` with the reason when the wait timed out.

Cancelled while it sleeps or waits, it closes the ticket (a clean-up step) and ends cancelled.
Run it next to ``trine --target=all``::

    python examples/approval_worker.py

Environment: ``TRINE_WORKER_ADDR`` (the coordinator); ``EXAMPLE_SIDE_EFFECT_LOG=path`` appends
``exec <run_id> <step>`` each time a step body really executes (the crash tests read it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

import trine

_effects_path = os.environ.get("EXAMPLE_SIDE_EFFECT_LOG")
EFFECTS: TextIO | None = open(_effects_path, "a", buffering=1) if _effects_path else None  # noqa: SIM115

worker = trine.Worker()


def executed(run_id: str, step: str) -> None:
    if EFFECTS is not None:
        EFFECTS.write(f"exec {run_id} {step}\n")
        EFFECTS.flush()


@worker.function
async def approval(ctx: trine.Context, request: dict[str, Any]) -> dict[str, Any]:
    def open_ticket() -> str:
        executed(ctx.run_id, "open_ticket")
        return f"ticket-{ctx.run_id}"

    def close_ticket() -> str:
        executed(ctx.run_id, "close_ticket")
        return "closed"

    ticket = await ctx.step("open_ticket", open_ticket)
    try:
        await ctx.sleep(request.get("sleep_s", 0))
        try:
            decision = await ctx.wait_for_signal("approve", timeout=request.get("timeout_s"))
        except trine.SignalTimeout as timeout:
            return {"ticket": ticket, "approved": False, "reason": str(timeout)}
    except trine.CancelledError:
        await ctx.step("close_ticket", close_ticket)
        raise
    return {"ticket": ticket, "approved": True, "approval": decision}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the approval workflow")
    parser.add_argument("--max-concurrency", type=int, default=100)
    worker.max_concurrency = parser.parse_args().max_concurrency
    worker.run()
