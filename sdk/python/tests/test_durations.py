"""Every duration an author gives in seconds reaches the wire in the same milliseconds as in the
rest of trine (``trine_proto.vocabulary.seconds_to_ms``): 4.03 s is 4030 ms, not the 4031 that
``math.ceil(4.03 * 1000)`` gives."""

from __future__ import annotations

from datetime import timedelta

import pytest

import trine

SECONDS = 4.03
MS = 4030


def test_a_retry_policy_sends_its_intervals_in_the_same_milliseconds() -> None:
    proto = trine.RetryPolicy(initial_interval=SECONDS, max_interval=SECONDS).to_proto()
    assert (proto.initial_interval_ms, proto.max_interval_ms) == (MS, MS)


async def test_a_function_timeout_is_registered_in_the_same_milliseconds(
    coordinator, make_worker, serve
) -> None:
    worker = make_worker()

    @worker.function(timeout=SECONDS)
    async def bounded(ctx: trine.Context, _: None) -> None:
        return None

    serve(worker)
    session = await coordinator.registered()
    [spec] = session.register.functions
    assert spec.timeout_ms == MS


@pytest.mark.parametrize("wait", ["sleep", "sleep-timedelta", "signal", "child"])
async def test_a_wait_sends_its_duration_in_the_same_milliseconds(
    coordinator, make_worker, serve, item, waits_suspend, wait
) -> None:
    worker = make_worker()

    @worker.function
    async def waiter(ctx: trine.Context, _: None) -> None:
        if wait == "sleep":
            await ctx.sleep(SECONDS)
        elif wait == "sleep-timedelta":
            await ctx.sleep(timedelta(seconds=SECONDS))
        elif wait == "signal":
            await ctx.wait_for_signal("go", timeout=SECONDS)
        else:
            await ctx.run("child", timeout=SECONDS)

    coordinator.ack_policy = waits_suspend
    serve(worker)
    session = await coordinator.registered()
    session.dispatch(item("r1", "waiter"))
    await coordinator.until(lambda: len(session.commands("r1")) == 1)
    [(kind, value)] = session.commands("r1")
    assert (value.duration_ms if kind == "sleep" else value.timeout_ms) == MS
