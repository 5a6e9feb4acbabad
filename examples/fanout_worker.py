"""A worker serving ``fanout`` and its child function ``square``: one parent, N children.

``fanout`` takes ``{"n": N, "fail": [indexes], "sleep_s": seconds}``, starts N ``square`` child
runs at once (one journal write for all of them), is suspended while they run, and returns
``{"sum": <sum of the squares that succeeded>, "failed": [{"index", "child_run_id", "type",
"message"}]}``: a failing child reaches the parent as ``trine.ChildRunError``, which it handles.
Each ``square`` child sleeps ``sleep_s`` seconds durably first, and fails (without retries) when
its index is listed in ``fail``. Cancel the parent and its children are cancelled with it.

    python examples/fanout_worker.py
"""

from __future__ import annotations

from typing import Any

import trine

worker = trine.Worker()


@worker.function
async def square(ctx: trine.Context, spec: dict[str, Any]) -> int:
    if spec.get("sleep_s"):
        await ctx.sleep(spec["sleep_s"])

    def compute() -> int:
        if spec.get("fail"):
            raise trine.NonRetryableError(f"square of {spec['n']} refused on purpose")
        return int(spec["n"]) ** 2

    result: int = await ctx.step("square", compute)
    return result


@worker.function
async def fanout(ctx: trine.Context, spec: dict[str, Any]) -> dict[str, Any]:
    fail = set(spec.get("fail", []))
    calls = [
        ("square", {"n": i, "fail": i in fail, "sleep_s": spec.get("sleep_s", 0)})
        for i in range(int(spec["n"]))
    ]
    results = await ctx.run_many(calls, return_exceptions=True)
    failed = [
        {"index": i, "child_run_id": r.child_run_id, "type": r.type, "message": r.message}
        for i, r in enumerate(results)
        if isinstance(r, trine.ChildRunError)
    ]
    total = sum(r for r in results if not isinstance(r, trine.ChildRunError))
    return {"sum": total, "failed": failed}


if __name__ == "__main__":
    worker.run()
