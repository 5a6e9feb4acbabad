"""A worker for the event tests (tests/test_events.py).

- ``emit_then_flaky`` emits ``before``, then takes a step that fails twice before it succeeds
  (each failure is retried by the engine: the run is dispatched again and re-walks the emit),
  then emits ``after`` and returns how often the step failed.
- ``emit_and_wait`` emits ``waiting``, waits durably for the signal ``go`` (the run is suspended
  while its event stream stays open), then emits ``went`` with the signal's payload and returns
  it.
"""

from __future__ import annotations

from typing import Any

import trine

worker = trine.Worker()
FAILURES: dict[str, int] = {}
"""How often ``flaky`` has failed, by run: its retries run in this process (one worker)."""


@worker.function(retry=trine.RetryPolicy(max_attempts=5, initial_interval=0.05))
async def emit_then_flaky(ctx: trine.Context, _: Any) -> int:
    await ctx.emit("before", {"run_id": ctx.run_id})

    def flaky() -> int:
        failed = FAILURES.get(ctx.run_id, 0)
        if failed < 2:
            FAILURES[ctx.run_id] = failed + 1
            raise ConnectionError(f"flaky failure {failed + 1}")
        return failed

    failures = int(await ctx.step("flaky", flaky))
    await ctx.emit("after", {"failures": failures})
    return failures


@worker.function
async def emit_and_wait(ctx: trine.Context, _: Any) -> Any:
    await ctx.emit("waiting", {"for": "go"})
    answer = await ctx.wait_for_signal("go")
    await ctx.emit("went", answer)
    return answer


if __name__ == "__main__":
    worker.run()
