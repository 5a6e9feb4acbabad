"""What trine's spans cost per call, without a tracer provider, with one that samples nothing out,
and with one that records everything (no exporter: the recording itself).

    .venv/bin/python bench/tracing_cost.py            # 5 rounds of 20,000 calls per operation

Each mode runs in a subprocess of its own (OpenTelemetry allows one global provider per process):
`off` is the runtime and the worker as installed without trine-tracing (or without OTEL_*);
`unsampled` is a provider whose sampler drops the trace (what 90 % of runs cost at a 10 % ratio:
`parentbased_traceidratio` of an unsampled parent); `sampled` records every span (exporter
`none`, so the export is not counted). Prints the median µs per call of each operation (the
sampled column is what one run in ten pays at a 10 % ratio):

- `runtime span`: a role's span (gateway, accept, dispatch) under a stored carrier, plus
  ``inject`` of its context (what the gateway and the coordinator do per run or dispatch);
- `worker attempt`: the SDK's attempt span under the run's carrier, with one step span inside
  (what a one-step attempt adds), outcomes set;
- `wait record`: a finished span from recorded times (the engine's wait and run-end spans).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
UNSAMPLED = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
MODES = ("off", "unsampled", "sampled")


def measure(mode: str, number: int, rounds: int) -> dict[str, float]:
    """In this process: install ``mode``'s provider, time each operation."""
    if mode != "off":
        os.environ["OTEL_TRACES_EXPORTER"] = "none"
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
        from trine_tracing import configure

        assert configure() is not None
    from trine import _tracing as worker
    from trine_core import tracing

    carrier = UNSAMPLED if mode == "unsampled" else CARRIER

    def runtime_span() -> None:
        if not tracing.enabled():  # as the coordinator and the engine guard theirs
            return
        with tracing.span("trine.dispatch order", carrier, attributes={"trine.run_id": "r"}) as s:
            if s is not None:  # as the coordinator: an unsampled run's context is passed on
                tracing.inject()

    def worker_attempt() -> None:
        if not worker.enabled():  # as _runner.execute and _steps.step guard theirs
            return
        with worker.attempt_span("r", "order", 1, carrier) as span:
            with worker.step_span("r", "order", "charge", 0, 1) as step:
                worker.outcome(step, "completed")
            worker.outcome(span, "completed")

    def wait_record() -> None:
        tracing.record("trine.sleep sleep", carrier, 1, 2, attributes={"trine.run_id": "r"})

    results: dict[str, float] = {}
    for name, op in (
        ("runtime span", runtime_span),
        ("worker attempt", worker_attempt),
        ("wait record", wait_record),
    ):
        per_call = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(number):
                op()
            per_call.append((time.perf_counter() - start) / number * 1e6)
        results[name] = statistics.median(per_call)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--number", type=int, default=20_000, help="calls per timing")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # the subprocess's
    args = p.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.number, args.rounds)))
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    table = {}
    for mode in MODES:
        argv = [sys.executable, __file__, "--mode", mode, "--number", str(args.number)]
        argv += ["--rounds", str(args.rounds)]
        out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
        table[mode] = json.loads(out.strip().splitlines()[-1])
    ops = list(table["off"])
    print(f"| µs per call (median of {args.rounds} x {args.number}) | " + " | ".join(MODES) + " |")
    print("|---|" + "---|" * len(MODES))
    for op in ops:
        print(f"| {op} | " + " | ".join(f"{table[m][op]:.2f}" for m in MODES) + " |")


if __name__ == "__main__":
    main()
