"""The `order` workload against trine: single-run latency and throughput, with process figures.

    .venv/bin/python bench/throughput.py                 # 200 sequential + 2,000 at concurrency 100
    .venv/bin/python bench/throughput.py --runs 500 --sequential 50 --rounds 3
    .venv/bin/python bench/throughput.py --topologies all,split --rounds 3   # side by side
    .venv/bin/python bench/throughput.py --topologies all,split --profile /tmp/prof
    .venv/bin/python bench/throughput.py --topologies all,split --tracing off,on --rounds 3

Starts trine (`--target=all`, or engine, coordinator and gateway processes for `split`) and one
`examples/order_worker.py` process on free loopback ports and a fresh data dir, drives them over
HTTP from this process (POST /v1/runs?wait=…, one request per run, like the peers' clients), then
stops the runtime with SIGTERM so the engine logs its journal append percentiles. Prints one
markdown row per topology, phase and round, then the medians, the split/all ratios, and each
process's peak RSS, CPU seconds and count of log lines at warning and above (the runtime's
processes, the worker and this client), with what they logged.

`--profile DIR` runs py-spy on every runtime process during the concurrent phase of the first
round of each topology (`DIR/<topology>-<target>.json`, speedscope format; those rounds are
marked `1p`, their figures include py-spy's overhead, and the medians leave them out when there
are other rounds) and prints the share of each process's busy samples per bucket
(`bench/profile_buckets.py`). py-spy is not a project requirement:

`--tracing off,on` runs every topology without and with the observers in each round. Off (when
"on" runs too; `--tracing off` alone is the default install): every observer plugin disabled,
`TRINE_PLUGINS=none`, so no metrics exporter and no tracing (the roles' instruments still count,
as they always do). On (rows `<topology>+tracing`): the installed observers, so `/metrics` is
served, and OpenTelemetry traces: the runtime's processes and the worker
(tests/workers/traced_worker.py, the same order worker with `trine_tracing.configure()`) export
over OTLP/HTTP to a receiver in this process that counts and drops what it gets, sampled at
`--trace-ratio` (default 0.1: `OTEL_TRACES_SAMPLER=parentbased_traceidratio`). It prints each
figure's on ÷ off ratio.

    .venv/bin/pip install py-spy

`--requests-per-turn 0,16` runs every topology once per value of the gateway's
`requests_per_turn` in each round (rows `<topology>+turns<N>` for each value after the first,
the baseline) and prints each figure's ratio to the baseline's: what letting a bounded number of
HTTP requests into the app per turn of the event loop costs under this load (`bench/storm.py`
shows what it buys under a flood).

`--fsync on,off` runs every topology with the engine's commits durable and with the disk taken
out of them (rows `<topology>+nofsync`: every RocksDB write unsynced, the sync thread's fsync a
no-op, through a `sitecustomize`; nothing in trine turns fsync off) in each round, alternating
the order, and prints the ratios: how much of a figure (the append p99, say) is the disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    TOPOLOGIES,
    Proc,
    engine_proc,
    engine_stats,
    median_row,
    no_fsync_site,
    per_turn_list,
    percentile,
    print_header,
    print_rows,
    proc_figures,
    running_cluster,
    session,
    target,
    topology_list,
)
from profile_buckets import print_table as print_profiles

from trine_gateway.settings import REQUESTS_PER_TURN
from trine_tracing.testing import OtlpSink


def order_input(i: int) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer": "c-42",
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
        "amount": 19.99,
    }


async def one_run(http: aiohttp.ClientSession, url: str, i: int) -> float:
    start = time.perf_counter()
    body = {"function": "order", "input": order_input(i)}
    async with http.post(f"{url}/v1/runs?wait=60", json=body) as response:
        answer = await response.json()
    elapsed = time.perf_counter() - start
    if answer.get("status") != "completed" or answer["result"]["order_id"] != f"o-{i}":
        raise RuntimeError(f"run {i} did not complete: {response.status} {answer}")
    return elapsed


async def sequential(url: str, n: int) -> list[float]:
    async with session(1) as http:
        return [await one_run(http, url, i) for i in range(n)]


async def concurrent(url: str, n: int, concurrency: int) -> tuple[list[float], float]:
    async with session(concurrency) as http:
        queue = iter(range(n))
        latencies: list[float] = []

        async def client() -> None:
            for i in queue:
                latencies.append(await one_run(http, url, 10_000_000 + i))

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start


def py_spy() -> str | None:
    """The virtualenv's py-spy (its bin/ need not be on PATH), else one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profiles(
    out: Path, topology: str, runtime: list[Proc], seconds: float | None
) -> list[tuple[Path, subprocess.Popen[bytes]]]:
    """py-spy on each process (the runtime's and the worker), until ``seconds`` or until
    ``stop_profiles``."""
    started = []
    for proc in runtime:
        path = out / f"{topology}-{target(proc)}.json"
        argv = [
            py_spy() or "py-spy",
            "record",
            "-p",
            str(proc.popen.pid),
            "-d",
            str(int(seconds or 3600)),
        ]
        argv += ["-f", "speedscope", "-o", str(path), "--nonblocking"]
        with path.with_suffix(".log").open("wb") as log:
            started.append((path, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
    return started


def stop_profiles(started: list[tuple[Path, subprocess.Popen[bytes]]]) -> list[Path]:
    """Stop the profilers (py-spy writes its file on SIGINT) and return the files written."""
    for _, spy in started:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
    written = []
    for path, spy in started:
        if spy.wait(timeout=60) == 0 and path.exists():
            written.append(path)
        else:
            log = path.with_suffix(".log").read_text(errors="replace")
            print(f"py-spy failed for {path.name} ({spy.returncode}):\n{log}", file=sys.stderr)
    return written


def log_problems(proc: Proc) -> Counter[str]:
    """The warnings and errors a process logged, as ``level: event`` with counts."""
    levels = ("warning", "error", "critical")
    return Counter(
        f"{record['level']}: {record.get('event')}"
        for record in proc.log.records()
        if record.get("level") in levels
    )


@dataclass
class Round:
    rows: list[dict[str, Any]]  # one per phase
    procs: dict[str, dict[str, float]]  # process name: rss_mb, cpu_s, warnings, errors
    problems: dict[str, Counter[str]]  # process name: what it logged at warning and above
    profiles: list[Path]
    profiled: bool


def one_round(
    args: argparse.Namespace,
    topology: str,
    profile: Path | None,
    tracing: dict[str, str] | None = None,
    wire: str = "grpc",
    per_turn: str = "",
    baseline: bool = True,
    no_fsync: Path | None = None,
) -> Round:
    """Both phases on a fresh deployment of ``topology`` (with ``tracing``: these ``OTEL_*``
    variables for every process, and the worker that sets up OpenTelemetry from them; ``wire``:
    the worker transport; ``per_turn``: the gateway's ``requests_per_turn``, named in the rows
    unless it is the ``baseline``; ``no_fsync``: the ``sitecustomize`` folder that takes fsync
    out, rows ``<topology>+nofsync``)."""
    client_cpu = time.process_time()
    env = dict(tracing or {})
    if per_turn:
        env[REQUESTS_PER_TURN.env] = per_turn
    if no_fsync is not None:
        env["PYTHONPATH"] = str(no_fsync)
    with running_cluster(
        topology, topology, prefix="trine-bench-", report=False, env=env, worker_scheme=wire
    ) as cluster:
        traced_run = tracing is not None and "OTEL_EXPORTER_OTLP_ENDPOINT" in tracing
        script = TRACED_WORKER if traced_run else "order_worker.py"
        worker = cluster.start_worker(script, "--max-concurrency", "100")
        seq = asyncio.run(sequential(cluster.url, args.sequential))
        spies = (
            start_profiles(profile, topology, [*cluster.runtime, worker], args.profile_seconds)
            if profile
            else []
        )
        try:
            lat, wall = asyncio.run(concurrent(cluster.url, args.runs, args.concurrency))
        finally:
            profiles = stop_profiles(spies)
        procs = {target(proc): proc_figures(proc) for proc in cluster.runtime}
        procs["worker"] = proc_figures(worker)
        procs["bench client"] = {
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_s": time.process_time() - client_cpu,
            "warnings": 0,
            "errors": 0,
        }
        engine = engine_proc(cluster)
        cluster.stop_runtime()
        stats = engine_stats(engine)
        problems = {target(proc): log_problems(proc) for proc in cluster.runtime}
        problems["worker"] = log_problems(worker)
        for name, counts in problems.items():
            procs[name]["warnings"] = sum(n for k, n in counts.items() if k.startswith("warning"))
            procs[name]["errors"] = sum(n for k, n in counts.items() if not k.startswith("warning"))
    runtime = [procs[target(proc)] for proc in cluster.runtime]
    shared = {
        "topology": topology
        + ("" if wire == "grpc" else f"+{wire}")
        + ("+tracing" if traced_run else "")
        + ("" if baseline else f"+turns{per_turn}")
        + ("" if no_fsync is None else "+nofsync"),
        # Split: the three runtime processes summed (RSS of each is their peak).
        "runtime_rss_mb": sum(f["rss_mb"] for f in runtime),
        "worker_rss_mb": procs["worker"]["rss_mb"],
        "runtime_cpu_s": sum(f["cpu_s"] for f in runtime),
        "worker_cpu_s": procs["worker"]["cpu_s"],
        "append_p50_ms": stats.get("append_p50_ms", float("nan")),
        "append_p99_ms": stats.get("append_p99_ms", float("nan")),
        "commit_p50_ms": stats.get("commit_p50_ms", float("nan")),
        "commit_p99_ms": stats.get("commit_p99_ms", float("nan")),
    }
    rows = [
        {
            "phase": f"sequential x{args.sequential}",
            "runs_s": len(seq) / sum(seq),
            "p50_ms": percentile(seq, 0.5) * 1000,
            "p99_ms": percentile(seq, 0.99) * 1000,
            **shared,
        },
        {
            "phase": f"{args.runs} @ c{args.concurrency}",
            "runs_s": args.runs / wall,
            "p50_ms": percentile(lat, 0.5) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000,
            **shared,
        },
    ]
    return Round(rows, procs, problems, profiles, profile is not None)


COLUMNS = [
    ("topology", "{}"),
    ("phase", "{}"),
    ("runs_s", "{:.0f}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("append_p50_ms", "{:.2f}"),
    ("append_p99_ms", "{:.2f}"),
    ("commit_p50_ms", "{:.2f}"),
    ("commit_p99_ms", "{:.2f}"),
    ("runtime_rss_mb", "{:.0f}"),
    ("worker_rss_mb", "{:.0f}"),
    ("runtime_cpu_s", "{:.1f}"),
    ("worker_cpu_s", "{:.1f}"),
]
TEXT = ("topology", "phase")
TRACED_WORKER = "tests/workers/traced_worker.py"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--topologies",
        default="all",
        help="comma list of all,split: each round runs them in turn, so noise hits every one",
    )
    p.add_argument(
        "--tracing",
        default="off",
        help="comma list of off,on: each round runs every topology without and with traces",
    )
    p.add_argument(
        "--wires",
        default="grpc",
        help="comma list of the worker transports, grpc,tcp: each round runs every topology "
        "over each (rows <topology>+tcp)",
    )
    p.add_argument(
        "--requests-per-turn",
        default="",
        help="comma list of the gateway's requests_per_turn (0: no limit): each round runs every "
        "topology with each (rows <topology>+turns<N> after the first)",
    )
    p.add_argument(
        "--fsync",
        default="on",
        help="comma list of on,off: each round runs every topology with each; off takes the "
        "disk out of the engine's commits (bench/common.py's NO_FSYNC; rows <topology>+nofsync)",
    )
    p.add_argument(
        "--trace-ratio",
        type=float,
        default=0.1,
        help="with --tracing on: the share of runs sampled (parentbased_traceidratio)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy each runtime process in round 1's loaded phase: DIR/<topology>-<target>.json",
    )
    p.add_argument(
        "--profile-seconds",
        type=float,
        metavar="S",
        help="stop profiling after S seconds (default: at the end of the concurrent phase)",
    )
    args = p.parse_args()
    topologies = topology_list(args.topologies)
    if unknown := set(topologies) - set(TOPOLOGIES):
        p.error(f"unknown topologies {sorted(unknown)}; known: {', '.join(TOPOLOGIES)}")
    if args.profile is not None:
        if py_spy() is None:
            print("py-spy not found: `.venv/bin/pip install py-spy`; running without --profile")
            args.profile = None
        else:
            args.profile.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.tracing.split(",") if v.strip()]
    args.wires = [w.strip() for w in args.wires.split(",") if w.strip()]
    try:
        args.requests_per_turn = per_turn_list(args.requests_per_turn)
    except ValueError as exc:
        p.error(str(exc))
    if not args.wires or set(args.wires) - {"grpc", "tcp"}:
        p.error(f"--wires: a comma list of grpc,tcp; got {args.wires!r}")
    if not variants or set(variants) - {"off", "on"}:
        p.error(f"--tracing: a comma list of off,on; got {args.tracing!r}")
    args.fsync = list(dict.fromkeys(v.strip() for v in args.fsync.split(",") if v.strip()))
    if not args.fsync or set(args.fsync) - {"off", "on"}:
        p.error(f"--fsync: a comma list of on,off; got {','.join(args.fsync)!r}")
    with contextlib.ExitStack() as stack:
        if "off" in args.fsync:
            site = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trine-nofsync-")))
            args.no_fsync_site = no_fsync_site(site)
        sink = stack.enter_context(OtlpSink(keep=False)) if "on" in variants else None
        traced = (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(args.trace_ratio),
            }
            if sink is not None
            else None
        )
        rounds = run_rounds(args, topologies, variants, traced)
        if sink is not None:
            print(
                f"\nOTLP receiver: {sink.requests} export requests, {sink.bytes / 1e6:.1f} MB "
                f"(sampled at {args.trace_ratio:g})"
            )
    report(args, rounds)


def run_rounds(
    args: argparse.Namespace,
    topologies: list[str],
    variants: list[str],
    traced: dict[str, str] | None,
) -> dict[str, list[Round]]:
    """Every round runs each topology in each variant in turn, so noise hits them all."""
    print_header(COLUMNS)
    rounds: dict[str, list[Round]] = {}
    for r in range(args.rounds):
        # Every other round runs the values in reverse: what runs later in a round runs on a
        # warmer, busier machine, and the ratio must not be that.
        per_turns = args.requests_per_turn if r % 2 == 0 else args.requests_per_turn[::-1]
        fsyncs = args.fsync if r % 2 == 0 else args.fsync[::-1]
        for topology, wire, variant, per_turn, fsync in itertools.product(
            topologies, args.wires, variants, per_turns, fsyncs
        ):
            # Compared with "on", "off" is every observer off; alone, the default install.
            off = {"TRINE_PLUGINS": "none"} if traced is not None else None
            tracing = traced if variant == "on" else off
            baseline = per_turn == args.requests_per_turn[0]  # the values are distinct
            profile = args.profile if r == 0 else None
            no_fsync = args.no_fsync_site if fsync == "off" else None
            one = one_round(args, topology, profile, tracing, wire, per_turn, baseline, no_fsync)
            rounds.setdefault(one.rows[0]["topology"], []).append(one)
            print_rows(COLUMNS, f"{r + 1}{'p' if one.profiled else ''}", one.rows)
    return rounds


def print_ratios(medians: dict[str, list[dict[str, Any]]], suffix: str, label: str) -> None:
    """Each figure of the rows named ``<topology><suffix>`` over the rows of ``<topology>``."""
    names = [t for t in medians if t.endswith(suffix) and t.removesuffix(suffix) in medians]
    if not names:
        return
    keys = ("runs_s", "p50_ms", "p99_ms", "append_p99_ms", "runtime_cpu_s", "worker_cpu_s")
    heads = ("runs/s", "p50", "p99", "append p99", "runtime CPU", "worker CPU")
    print("\n| topology | phase | " + " | ".join(f"{h} {label}" for h in heads) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name in names:
        for base, variant in zip(medians[name.removesuffix(suffix)], medians[name], strict=True):
            cells = " | ".join(f"{variant[key] / base[key]:.2f}" for key in keys)
            print(f"| {name.removesuffix(suffix)} | {base['phase']} | {cells} |")


def report(args: argparse.Namespace, rounds: dict[str, list[Round]]) -> None:
    """Medians, ratios, process figures, problems and profiles of every round."""
    # Medians leave the profiled round out when there are others.
    kept = {t: [x for x in rs if not x.profiled] or rs for t, rs in rounds.items()}
    medians = {
        t: [median_row(COLUMNS, [x.rows[i] for x in rs], TEXT) for i in range(2)]
        for t, rs in kept.items()
    }
    if args.rounds > 1:
        for rows in medians.values():
            print_rows(COLUMNS, "median", rows)
    if "all" in medians and "split" in medians:
        print("\n| phase | runs/s split ÷ all | p50 split ÷ all | p99 split ÷ all |")
        print("|---|---|---|---|")
        for one_row, split in zip(medians["all"], medians["split"], strict=True):
            ratios = [split[key] / one_row[key] for key in ("runs_s", "p50_ms", "p99_ms")]
            print(f"| {one_row['phase']} | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    print_ratios(medians, "+tracing", "on ÷ off")
    print_ratios(medians, "+tcp", "tcp ÷ grpc")
    print_ratios(medians, "+nofsync", "off ÷ on")
    base = args.requests_per_turn[0] or "default"
    for per_turn in args.requests_per_turn[1:]:
        print_ratios(medians, f"+turns{per_turn}", f"{per_turn} ÷ {base}")
    print_processes({t: [x.procs for x in rs] for t, rs in kept.items()}, args.rounds)
    print_problems(rounds)
    profiles = [path for rs in rounds.values() for x in rs for path in x.profiles]
    if profiles:
        print(
            f"\nShare of each runtime process's busy samples (py-spy, {args.runs} @ c"
            f"{args.concurrency}, round 1; files in {args.profile}):\n"
        )
        print_profiles(profiles)
        dropped = ", ".join(f"{path.stem} {spy_errors(path)}" for path in profiles)
        print(f"\nSamples py-spy could not read (--nonblocking), left out: {dropped}")


def spy_errors(profile: Path) -> str:
    """``errors of samples+errors`` from py-spy's closing line ("Samples: N Errors: M")."""
    words = profile.with_suffix(".log").read_text(errors="replace").split()
    try:
        samples = int(words[words.index("Samples:") + 1])
        errors = int(words[words.index("Errors:") + 1])
    except (ValueError, IndexError):
        return "?"
    return f"{errors} of {samples + errors}"


def print_problems(rounds: dict[str, list[Round]]) -> None:
    """What the processes logged at warning and above, summed over the rounds, if anything."""
    lines = []
    for topology, per_round in rounds.items():
        total: dict[str, Counter[str]] = {}
        for one in per_round:
            for name, counts in one.problems.items():
                total.setdefault(name, Counter()).update(counts)
        for name, counts in total.items():
            for what, n in counts.most_common(5):
                lines.append(f"- {topology} {name}: {n}x {what}")
    if lines:
        print("\nLogged at warning and above (all rounds; top 5 per process):\n")
        print("\n".join(lines))


def print_processes(rounds: dict[str, list[dict[str, dict[str, float]]]], n: int) -> None:
    """Peak RSS and CPU seconds of every process over a whole round (medians if several), and
    its share of the CPU that all of them used: the runtime's, the worker and this client."""
    what = "medians of the rounds" if n > 1 else "one round"
    print(f"\nEach process over a whole round ({what}):\n")
    print(
        "| topology | process | rss_mb | cpu_s | share of round CPU | log warnings | log errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for topology, per_round in rounds.items():
        names = list(per_round[0])
        cpu = {name: statistics.median(r[name]["cpu_s"] for r in per_round) for name in names}
        total = sum(cpu.values())
        for name in names:
            rss, warnings, errors = (
                statistics.median(r[name][key] for r in per_round)
                for key in ("rss_mb", "warnings", "errors")
            )
            cells = [topology, name, f"{rss:.0f}", f"{cpu[name]:.1f}", f"{cpu[name] / total:.0%}"]
            cells += [f"{warnings:.0f}", f"{errors:.0f}"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
