"""What recording into trine_core.instruments costs per call (issue 11), and per `order` run.

    .venv/bin/python bench/instruments.py

Each operation is timed with ``timeit`` (best of 5 repeats of 200,000 calls), as the roles make
it: a labelled counter's ``labels(function).inc()``, a labelled histogram's
``labels(function).observe(x)``, an unlabelled histogram's ``observe(x)``, the gateway's ASGI
wrapper around a no-op app. The last table multiplies them by what one 3-step `order` run
records (docs/operations.md lists the metrics) and compares that with the runtime CPU a run
costs (about 3.9 ms in `all`, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import timeit

from trine_core.instruments import DURATION_BUCKETS, LATENCY_BUCKETS, Registry

RUNTIME_CPU_PER_RUN_US = 3900.0
NUMBER = 200_000


def best(statement: str, namespace: dict[str, object]) -> float:
    """ns per call, the best of 5 repeats."""
    times = timeit.repeat(statement, globals=namespace, number=NUMBER, repeat=5)
    return min(times) / NUMBER * 1e9


def main() -> None:
    registry = Registry()
    counter = registry.counter("trine_bench_total", "bench", ("function",))
    histogram = registry.histogram("trine_bench_seconds", "bench", ("function",), DURATION_BUCKETS)
    plain = registry.histogram("trine_bench_plain_seconds", "bench", (), LATENCY_BUCKETS)
    ns = {"counter": counter, "histogram": histogram, "plain": plain}
    costs = {
        "counter.labels(f).inc()": best("counter.labels('order').inc()", ns),
        "histogram.labels(f).observe(x)": best("histogram.labels('order').observe(0.0123)", ns),
        "histogram.observe(x) (unlabelled)": best("plain.observe(0.00042)", ns),
    }

    from trine_gateway.metrics import instrument

    async def app(scope: object, receive: object, send: object) -> None:
        pass

    async def direct() -> None:
        for _ in range(NUMBER):
            await app({}, None, None)

    wrapped = instrument(app)
    scope = {"type": "http", "method": "POST", "path_template": "/v1/runs"}

    async def through() -> None:
        for _ in range(NUMBER):
            await wrapped(scope, None, None)

    loop = asyncio.new_event_loop()
    runs = []
    for coroutine in (direct, through) * 3:
        started = timeit.default_timer()
        loop.run_until_complete(coroutine())
        runs.append((timeit.default_timer() - started) / NUMBER * 1e9)
    loop.close()
    costs["gateway ASGI wrapper (per request)"] = min(runs[1::2]) - min(runs[0::2])

    print("| operation | ns per call |")
    print("|---|---|")
    for name, cost in costs.items():
        print(f"| {name} | {cost:.0f} |")

    # One 3-step order run in `all`: 1 start, 3 step ends (counter + histogram each), 1 finish
    # (counter + histogram), 1 dispatch, ~5 journal records each appended (1 observe) in ~5
    # commits (2 observes), 1 HTTP request (the wrapper; a ?wait long-poll is one request).
    per_run = (
        costs["counter.labels(f).inc()"] * (1 + 3 + 1)
        + costs["histogram.labels(f).observe(x)"] * (3 + 1 + 1)
        + costs["histogram.observe(x) (unlabelled)"] * (5 + 5 * 2)
        + costs["gateway ASGI wrapper (per request)"]
    )
    print()
    print("| per `order` run | µs | share of the runtime's CPU per run |")
    print("|---|---|---|")
    share = per_run / 1000 / RUNTIME_CPU_PER_RUN_US
    print(f"| recording | {per_run / 1000:.1f} | {share:.2%} |")


if __name__ == "__main__":
    main()
