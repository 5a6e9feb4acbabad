"""Where one run's time goes: the `order` workload one run at a time, each run's latency cut into
phases by the run's own events, with durable commits and without fsync, side by side.

    .venv/bin/python bench/latency.py                              # all, 200 runs x 3 rounds
    .venv/bin/python bench/latency.py --topologies all,split --rounds 3

Each round starts a fresh trine of each topology twice, in turn: `durable` (as shipped) and
`no-fsync` (the engine's RocksDB writes never synced: a `sitecustomize` on the runtime's
PYTHONPATH patches `Store.write` to sync=False and `Store.sync_wal` to nothing; nothing in trine
can turn fsync off). The gap between the two rows is what waiting for the disk costs a run; what
the no-fsync row still spends is the processes and their hops.

Runs go one at a time (POST /v1/runs?wait=60, as throughput.py's sequential phase); then each
run's events are read (GET /v1/runs/{id}/events) and its time cut at them (the engine stamps
each event in ms when it applies it, before its commit; means over the runs, so below 1 ms):

  p50_ms, p99_ms  the client's POST to its answer
  to_first_ms     run.started to its first step's report (start commit, dispatch, the step body)
  per_step_ms     between one step's report and the next's (the commit, the ack, the next body)
  outside_ms      the client's time less run.started..run.completed (HTTP, the last commit,
                  the answer)
  runtime_cpu_ms  CPU (user + system, from /proc, in 10 ms ticks: 0.05 ms a run at 200 runs,
  worker_cpu_ms   per process) the runtime's processes spent per run over the measured runs,
                  and the worker's, whatever it went to (heartbeats and renewals too). In `all`
                  one process waits for the other, so their sum and the fsyncs come close to
                  the latency; in `split` the processes overlap on the machine's cores

`--profile DIR` adds cProfile to every process (the same `sitecustomize`; SIGUSR1 starts it at
the first measured run, SIGUSR2 stops it and dumps DIR/<topology>-<wire>-<mode>-<pid>.prof) and
prints, per process, its own time per run in each of bench/profile_buckets.py's buckets and the
functions that spent most, with their calls per run. cProfile slows Python about 2x, so the
latency rows of a profiled run are not comparable with others; the calls are counted, not
sampled (they include the background work within the window: heartbeats, renewals, credit). It
sees the main thread only: the engine's sync thread, which fsyncs the batches written unsynced
(under load, or after a slow commit), is not in the profile:

    .venv/bin/python bench/latency.py --rounds 1 --runs 300 --wires tcp --profile /tmp/prof

`--timeline DIR` (not with `--profile`) stamps fixed points of every process instead (the
request read, the handler, the engine's accept, each RocksDB write, the lease, each message on
the worker stream at both ends, each report, the answer; bench/timeline.py) and prints a run's
wall time hop by hop, runtime and worker merged on the machine's one monotonic clock: where a run
waits for the disk or for a process to wake, which a profile does not show:

    .venv/bin/python bench/latency.py --rounds 1 --runs 300 --wires tcp --modes durable,no-fsync \\
        --timeline /tmp/tl
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    NO_FSYNC,
    Columns,
    Proc,
    cpu_s,
    median_row,
    percentile,
    print_header,
    print_row,
    print_rows,
    running_cluster,
    session,
    topology_list,
)
from profile_buckets import ORDER, cprofile_seconds
from throughput import order_input
from timeline import SITE as TIMELINE
from timeline import print_timeline

PROFILE = """\
import cProfile as _cprofile, os as _os, signal as _signal

_profile = _cprofile.Profile()


def _dump(*_):
    _profile.disable()
    path = f"{_os.environ['BENCH_PROFILE_PREFIX']}-{_os.getpid()}.prof"
    _profile.dump_stats(path + ".part")
    _os.replace(path + ".part", path)


def _enable(*_):
    _profile.enable()
    open(f"{_os.environ['BENCH_PROFILE_PREFIX']}-{_os.getpid()}.armed", "w").close()


_signal.signal(_signal.SIGUSR1, _enable)
_signal.signal(_signal.SIGUSR2, _dump)
"""
WATCHES = {
    "profile": (PROFILE, "BENCH_PROFILE_PREFIX", ".prof"),
    "timeline": (TIMELINE, "BENCH_TIMELINE_PREFIX", ".json"),
}
"""What ``--profile`` and ``--timeline`` add to the ``sitecustomize``, the variable naming where
each process dumps (``<prefix>-<pid><suffix>``) and the suffix."""
Watch = tuple[str, Path]  # ("profile" or "timeline", DIR)
MODES = ("durable", "no-fsync")
WARMUP = 10  # runs left out of the figures: the first connections, the first WAL file
WORKER = ("order_worker.py", "--max-concurrency", "100")
TOP_FUNCTIONS = 12

COLUMNS: Columns = [
    ("topology", "{}"),
    ("wire", "{}"),
    ("mode", "{}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("to_first_ms", "{:.2f}"),
    ("per_step_ms", "{:.2f}"),
    ("outside_ms", "{:.2f}"),
    ("runtime_cpu_ms", "{:.1f}"),
    ("worker_cpu_ms", "{:.1f}"),
]
TEXT = ("topology", "wire", "mode")


async def one_by_one(url: str, n: int, measuring: Callable[[], None]) -> list[tuple[str, float]]:
    """:data:`WARMUP` runs, then ``n`` measured ones, one at a time on one connection: each
    measured run's id and its latency in ms. ``measuring`` is called between the two."""
    runs = []
    async with session(1) as http:
        for i in range(WARMUP + n):
            if i == WARMUP:
                measuring()
            body = {"function": "order", "input": order_input(i)}
            start = time.perf_counter()
            async with http.post(f"{url}/v1/runs?wait=60", json=body) as response:
                answer = await response.json()
            if answer.get("status") != "completed":
                raise RuntimeError(f"run {i} did not complete: {response.status} {answer}")
            runs.append((answer["id"], (time.perf_counter() - start) * 1000))
    return runs[WARMUP:]


async def events(http: aiohttp.ClientSession, url: str, run_id: str) -> list[dict[str, Any]]:
    """A finished run's events (the SSE route ends after the final one)."""
    found = []
    async with http.get(f"{url}/v1/runs/{run_id}/events") as response:
        async for line in response.content:
            if line.startswith(b"data:"):
                found.append(json.loads(line[5:]))
    return found


def at_ms(event: dict[str, Any]) -> float:
    """When the engine applied ``event``, in ms (``at`` is ISO 8601 with ms)."""
    return datetime.fromisoformat(event["at"]).timestamp() * 1000


async def phases(url: str, runs: list[tuple[str, float]]) -> dict[str, float]:
    """The means of each phase over ``runs`` (see the module's docstring)."""
    to_first: list[float] = []
    per_step: list[float] = []
    outside: list[float] = []
    async with session(1) as http:
        for run_id, took in runs:
            found = await events(http, url, run_id)
            reports = [at_ms(e) for e in found if e["type"] == "step.completed"]
            first, last = at_ms(found[0]), at_ms(found[-1])
            to_first.append(reports[0] - first)
            per_step += [b - a for a, b in itertools.pairwise(reports)]
            outside.append(took - (last - first))
    return {
        "to_first_ms": statistics.mean(to_first),
        "per_step_ms": statistics.mean(per_step),
        "outside_ms": statistics.mean(outside),
    }


def site_dir(probe: Path, mode: str, watch: Watch | None) -> Path | None:
    """A folder whose ``sitecustomize`` patches fsync out (``no-fsync``) and arms the profiler
    or the timeline (``watch``), for the processes' PYTHONPATH; None when neither is asked for."""
    parts = ([NO_FSYNC] if mode == "no-fsync" else []) + ([WATCHES[watch[0]][0]] if watch else [])
    if not parts:
        return None
    folder = probe / f"{mode}{'-' + watch[0] if watch else ''}"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text("\n".join(parts))
    return folder


def one_round(
    topology: str, wire: str, mode: str, n: int, probe: Path, watch: Watch | None = None
) -> dict[str, Any]:
    site = site_dir(probe, mode, watch)
    label = f"{topology}-{wire}-{mode}"
    env = {"PYTHONPATH": str(site)} if site else {}
    if watch:
        env[WATCHES[watch[0]][1]] = str(watch[1] / label)
    with running_cluster(
        topology, topology, prefix="trine-latency-", env=env, worker_scheme=wire
    ) as cluster:
        processes = {"runtime": cluster.runtime, "worker": [cluster.start_worker(*WORKER)]}
        cpu: dict[str, float] = {}
        everyone = [proc for procs in processes.values() for proc in procs]

        def measuring() -> None:
            cpu.update({name: -cpu_s(procs) for name, procs in processes.items()})
            if watch:
                for proc in everyone:
                    proc.popen.send_signal(signal.SIGUSR1)
                # Armed before the first measured run, or its stamps would be partial:
                files_of(everyone, watch[1] / label, ".armed", "armed")

        runs = asyncio.run(one_by_one(cluster.url, n, measuring))
        for name, procs in processes.items():
            cpu[name] += cpu_s(procs)
        if watch:
            dumped = dumps_of(everyone, watch[1] / label, WATCHES[watch[0]][2])
        cut = asyncio.run(phases(cluster.url, runs))
        cluster.stop_runtime()  # what the processes log after is the stop's doing
    if watch and watch[0] == "profile":
        print_profiles(label, dumped, n)
    elif watch:
        print_timeline(label, list(dumped.values()))
    took = [ms for _, ms in runs]
    return {
        "topology": topology,
        "wire": wire,
        "mode": mode,
        "p50_ms": percentile(took, 0.5),
        "p99_ms": percentile(took, 0.99),
        **cut,
        **{f"{name}_cpu_ms": seconds * 1000 / n for name, seconds in cpu.items()},
    }


def dumps_of(procs: list[Proc], prefix: Path, suffix: str) -> dict[str, Path]:
    """Stop each process's profiler or timeline (SIGUSR2) and wait for its dump:
    ``{process name: file}``."""
    for proc in procs:
        proc.popen.send_signal(signal.SIGUSR2)
    return files_of(procs, prefix, suffix, "dumped")


def files_of(procs: list[Proc], prefix: Path, suffix: str, what: str) -> dict[str, Path]:
    """Wait (30 s at most) for each process's ``<prefix>-<pid><suffix>``: ``{name: file}``."""
    files = {proc.name: Path(f"{prefix}-{proc.popen.pid}{suffix}") for proc in procs}
    deadline = time.monotonic() + 30
    while not all(path.exists() for path in files.values()):
        if time.monotonic() > deadline:
            missing = [name for name, path in files.items() if not path.exists()]
            raise RuntimeError(f"not {what}: {missing}")
        time.sleep(0.01)
    return files


def print_profiles(label: str, files: dict[str, Path], n: int) -> None:
    """Per process, its own time per run in each bucket, and the functions that spent most."""
    print(f"\nProfile of {label} (cProfile over the measured runs, main threads, ms a run: Python")
    print("runs about 2x slower under it, a blocking call such as the synced commit does not):\n")
    print("| process | busy | " + " | ".join(ORDER) + " |")
    print("|---" * (len(ORDER) + 2) + "|")
    tops = {}
    for name, path in files.items():
        seconds, functions = cprofile_seconds(path)
        busy = sum(seconds.values())
        cells = [f"{seconds[k] * 1000 / n:.2f}" for k in ORDER]
        print(f"| {name} | {busy * 1000 / n:.2f} | " + " | ".join(cells) + " |")
        tops[name] = sorted(functions.items(), key=lambda item: -item[1][0])[:TOP_FUNCTIONS]
    for name, top in tops.items():
        print(f"\n{name}: own ms a run, calls a run")
        for function, (own, calls) in top:
            print(f"  {own * 1000 / n:6.3f}  {calls / n:6.1f}  {function}")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=200)  # at least 1
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--topologies", default="all", help="comma list of all,split")
    p.add_argument("--wires", default="grpc", help="comma list of the worker transports: grpc,tcp")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of durable,no-fsync")
    watching = p.add_mutually_exclusive_group()
    watching.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="cProfile every process over the measured runs (DIR/<topology>-<wire>-<mode>-<pid>"
        ".prof) and print where each spent its time; the latency rows are then the profiled ones",
    )
    watching.add_argument(
        "--timeline",
        type=Path,
        metavar="DIR",
        help="stamp fixed points of every process over the measured runs (DIR/<topology>-<wire>-"
        "<mode>-<pid>.json) and print a run's wall time hop by hop (bench/timeline.py)",
    )
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    topologies = topology_list(args.topologies)
    wires = [w for w in args.wires.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES) or not modes:
        p.error(f"--modes takes {','.join(MODES)}")
    rows: list[dict[str, Any]] = []
    print_header(COLUMNS)
    watch: Watch | None = None
    if args.profile or args.timeline:
        watch = ("profile", args.profile) if args.profile else ("timeline", args.timeline)
        watch[1].mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trine-latency-probe-") as probe:
        for number in range(1, args.rounds + 1):
            for topology, wire, mode in itertools.product(topologies, wires, modes):
                row = one_round(topology, wire, mode, args.runs, Path(probe), watch)
                rows.append(row)
                print_row(COLUMNS, str(number), row)
    if args.rounds > 1:
        print("\nMedians over the rounds:\n")
        print_header(COLUMNS)
        medians = [
            median_row(
                COLUMNS, [r for r in rows if (r["topology"], r["wire"], r["mode"]) == key], TEXT
            )
            for key in dict.fromkeys((r["topology"], r["wire"], r["mode"]) for r in rows)
        ]
        print_rows(COLUMNS, "median", medians)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
