"""Durable waits against trine: many runs asleep at once, and one run fanning out to N children.

    .venv/bin/python bench/waits.py                       # 10,000 sleepers, fan-out of 1,000
    .venv/bin/python bench/waits.py --topologies all --sleepers 10000
    .venv/bin/python bench/waits.py --sleepers 500 --fanout 100 --topologies all   # a quick look
    .venv/bin/python bench/waits.py --rounds 3 --workdir /tmp/waits   # keep the processes' logs

Each workload gets a fresh trine (`--target=all`, or engine, coordinator and gateway processes
for `split`) on free loopback ports and a fresh data dir, plus one worker with its default max
concurrency, driven over HTTP from this process; at the end the runtime is stopped with SIGTERM.

sleepers: `bench/sleeper_worker.py`. N `sleeper` runs are started (POST /v1/runs, no ?wait, at
`--concurrency`), all due at one time, T0 + `--sleep-s` (default 120: on 2 cores, starting 10,000
and seeing them all asleep takes ~30 s in `all`, ~65 s in `split`). Once they are all started and
none is pending or running (all suspended), the figures of the processes are read, then at the
due time every run is long-polled (GET /v1/runs/{id}?wait=60, in start order, at `--concurrency`)
until it completed with its own due time as result. Timings use the runs' server `updated_at`.
fanout: `examples/fanout_worker.py`. One `fanout` run with {"n": N} starts N `square` children at
once; timed from its POST until it completes, its sum checked.

Columns (one markdown row per topology, workload and round; the medians when --rounds > 1):
  ok            runs completed with the expected result / runs
  start_s       sleepers: time to POST all N runs
  suspended_s   sleepers: from T0 until no run is pending or running (polled every 0.5 s)
  done_s        sleepers: last run's updated_at - due time (all_done_after_due_s);
                fanout: the parent's updated_at - created_at
  wake_p50_s    sleepers: median of (updated_at - due) over the runs; wake_p99_s likewise
  client_s      sleepers: when this process saw the last run completed - due time;
                fanout: POST until this process saw the run completed
  runs_s        sleepers: N / done_s; fanout: N children / client_s
  rt_rss_sleep_mb runtime peak RSS (MB, summed in split) with all N asleep, before the due time
  rt_rss_mb     the same at the end; wk_rss_mb the worker's
  rt_cpu_s      runtime CPU seconds in all; rt_cpu_wake_s those spent from the due time on
  append_p99_ms the engine's journal append p99, as it logs at shutdown
Problems (runs not completed, a due time passed before every run was asleep, error or warning
lines in the processes' logs) are written to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    any_in,
    engine_proc,
    engine_stats,
    figures,
    median_row,
    percentile,
    print_header,
    print_row,
    running_cluster,
    session,
    start_runs,
    topology_list,
    warn,
)

FINAL = ("completed", "failed", "cancelled")
POLL_WAIT_S = 60  # per long-poll; below session()'s 120 s total timeout


def server_ms(iso: str) -> int:
    """The run JSON's ``2025-01-31T12:00:00.123Z`` → milliseconds since the epoch."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# -- sleepers --------------------------------------------------------------------------------------


async def count_in(http: aiohttp.ClientSession, url: str, status: str) -> int:
    params = {"status": status, "function": "sleeper", "limit": "1000"}
    count = 0
    while True:
        async with http.get(f"{url}/v1/runs", params=params) as response:
            page = await response.json()
        count += len(page["runs"])
        if not page.get("next_page_token"):
            return count
        params["page_token"] = page["next_page_token"]


async def until_suspended(url: str, t0: float, due: float) -> float | None:
    """Seconds from ``t0`` until no sleeper is pending or running, or None if due came first."""
    async with session(1) as http:
        while True:
            busy = await any_in(http, url, "sleeper", "pending") or await any_in(
                http, url, "sleeper", "running"
            )
            now = time.time()
            if not busy:
                return now - t0
            if now >= due:
                pending = await count_in(http, url, "pending")
                running = await count_in(http, url, "running")
                warn(
                    f"not every sleeper was asleep by the due time ({pending} pending, "
                    f"{running} running, counting woken ones): the wake figures include first "
                    "executions; raise --sleep-s"
                )
                return None
            await asyncio.sleep(0.5)


async def await_sleepers(
    url: str, ids: list[str], deadline: float, concurrency: int
) -> tuple[list[dict[str, Any]], list[float], list[dict[str, Any]]]:
    """Long-poll every run until final: the final runs, when each was seen, and the runs still
    not final at ``deadline``."""
    done: list[dict[str, Any]] = []
    seen: list[float] = []
    stuck: list[dict[str, Any]] = []
    async with session(concurrency) as http:
        queue = iter(ids)

        async def client() -> None:
            for run_id in queue:
                while True:
                    params = {"wait": str(POLL_WAIT_S)}
                    async with http.get(f"{url}/v1/runs/{run_id}", params=params) as response:
                        run = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"GET run {run_id}: {response.status} {run}")
                    if run["status"] in FINAL:
                        done.append(run)
                        seen.append(time.time())
                        break
                    if time.time() > deadline:
                        stuck.append(run)
                        break

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, seen, stuck


def sleepers_round(args: argparse.Namespace, topology: str, name: str) -> dict[str, Any]:
    n = args.sleepers
    with running_cluster(topology, name, args.workdir) as cluster:
        worker = cluster.start_worker("bench/sleeper_worker.py")
        t0 = time.time()
        due = t0 + args.sleep_s
        due_ms = round(due * 1000)
        sleepers = [{"function": "sleeper", "input": {"until_ms": due_ms}}] * n
        ids = asyncio.run(start_runs(cluster.url, sleepers, args.concurrency))
        start_s = time.time() - t0
        if start_s >= args.sleep_s:
            warn(
                f"{topology}: starting {n} sleepers took {start_s:.1f} s, longer than "
                f"--sleep-s {args.sleep_s}: the wake figures are meaningless; raise --sleep-s"
            )
        suspended_s = asyncio.run(until_suspended(cluster.url, t0, due))
        if suspended_s is not None:  # read the figures just before the due time
            time.sleep(max(0.0, due - 0.25 - time.time()))
        asleep_rt = figures(cluster.runtime)
        time.sleep(max(0.0, due - time.time()))
        done, seen, stuck = asyncio.run(
            await_sleepers(cluster.url, ids, due + args.timeout, args.concurrency)
        )
        end_rt = figures(cluster.runtime)
        end_wk = figures([worker])
        engine = engine_proc(cluster)
        cluster.stop_runtime()
        stats = engine_stats(engine)
    ok = [r for r in done if r["status"] == "completed" and r["result"] == due_ms]
    if len(ok) < n:
        right = {r["id"] for r in ok}
        bad = [r for r in done if r["id"] not in right]
        warn(f"{topology}: {len(ok)}/{n} sleepers completed right; {len(stuck)} not final")
        for run in (bad + stuck)[:3]:
            warn(f"  e.g. {run}")
    late = [(server_ms(r["updated_at"]) - due_ms) / 1000 for r in done] or [float("nan")]
    done_s = max(late)
    return {
        "topology": topology,
        "workload": f"sleepers x{n}",
        "ok": f"{len(ok)}/{n}",
        "start_s": start_s,
        "suspended_s": suspended_s,
        "done_s": done_s,
        "wake_p50_s": percentile(late, 0.5),
        "wake_p99_s": percentile(late, 0.99),
        "client_s": max(seen, default=float("nan")) - due,
        "runs_s": n / done_s if done_s > 0 else None,
        "rt_rss_sleep_mb": asleep_rt["rss_mb"],
        "rt_rss_mb": end_rt["rss_mb"],
        "wk_rss_mb": end_wk["rss_mb"],
        "rt_cpu_s": end_rt["cpu_s"],
        "rt_cpu_wake_s": end_rt["cpu_s"] - asleep_rt["cpu_s"],
        "wk_cpu_s": end_wk["cpu_s"],
        "append_p99_ms": stats.get("append_p99_ms"),
    }


# -- fan-out ---------------------------------------------------------------------------------------


async def one_fanout(url: str, n: int, limit_s: float) -> tuple[dict[str, Any], float]:
    async with session(1) as http:
        start = time.perf_counter()
        body = {"function": "fanout", "input": {"n": n}}
        async with http.post(f"{url}/v1/runs?wait={POLL_WAIT_S}", json=body) as response:
            run = await response.json()
        if response.status not in (201, 202):
            raise RuntimeError(f"fanout not started: {response.status} {run}")
        while run["status"] not in FINAL and time.perf_counter() - start < limit_s:
            params = {"wait": str(POLL_WAIT_S)}
            async with http.get(f"{url}/v1/runs/{run['id']}", params=params) as response:
                run = await response.json()
        return run, time.perf_counter() - start


def fanout_round(args: argparse.Namespace, topology: str, name: str) -> dict[str, Any]:
    n = args.fanout
    with running_cluster(topology, name, args.workdir) as cluster:
        worker = cluster.start_worker("fanout_worker.py")
        run, client_s = asyncio.run(one_fanout(cluster.url, n, args.timeout))
        rt = figures(cluster.runtime)
        wk = figures([worker])
        engine = engine_proc(cluster)
        cluster.stop_runtime()
        stats = engine_stats(engine)
    expected = sum(i * i for i in range(n))
    result = run.get("result") or {}
    right = run["status"] == "completed" and result == {"sum": expected, "failed": []}
    if not right:
        warn(f"{topology}: fanout x{n} ended {run['status']}, expected sum {expected}: {run}")
    return {
        "topology": topology,
        "workload": f"fanout x{n}",
        "ok": f"{int(right)}/1",
        "start_s": None,
        "suspended_s": None,
        "done_s": (server_ms(run["updated_at"]) - server_ms(run["created_at"])) / 1000,
        "wake_p50_s": None,
        "wake_p99_s": None,
        "client_s": client_s,
        "runs_s": n / client_s,
        "rt_rss_sleep_mb": None,
        "rt_rss_mb": rt["rss_mb"],
        "wk_rss_mb": wk["rss_mb"],
        "rt_cpu_s": rt["cpu_s"],
        "rt_cpu_wake_s": None,
        "wk_cpu_s": wk["cpu_s"],
        "append_p99_ms": stats.get("append_p99_ms"),
    }


# -- the table -------------------------------------------------------------------------------------


COLUMNS = [
    ("topology", "{}"),
    ("workload", "{}"),
    ("ok", "{}"),
    ("start_s", "{:.1f}"),
    ("suspended_s", "{:.1f}"),
    ("done_s", "{:.2f}"),
    ("wake_p50_s", "{:.2f}"),
    ("wake_p99_s", "{:.2f}"),
    ("client_s", "{:.2f}"),
    ("runs_s", "{:.0f}"),
    ("rt_rss_sleep_mb", "{:.0f}"),
    ("rt_rss_mb", "{:.0f}"),
    ("wk_rss_mb", "{:.0f}"),
    ("rt_cpu_s", "{:.1f}"),
    ("rt_cpu_wake_s", "{:.1f}"),
    ("wk_cpu_s", "{:.1f}"),
    ("append_p99_ms", "{:.2f}"),
]
TEXT = ("topology", "workload", "ok")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sleepers", type=int, default=10_000, help="runs asleep at once (0: skip)")
    p.add_argument("--sleep-s", type=float, default=120.0, help="due time: start + this")
    p.add_argument("--fanout", type=int, default=1000, help="children of one run (0: skip)")
    p.add_argument("--concurrency", type=int, default=100, help="HTTP requests at once")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a run may be late")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--topologies", default="all,split", help="comma list of all,split")
    p.add_argument("--workdir", help="keep each cluster's data and logs under this new dir")
    args = p.parse_args()
    topologies = topology_list(args.topologies)
    workloads = [
        (kind, run)
        for kind, size, run in (
            ("sleepers", args.sleepers, sleepers_round),
            ("fanout", args.fanout, fanout_round),
        )
        if size > 0
    ]
    print_header(COLUMNS)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for topology in topologies:
            for kind, one_round in workloads:
                row = one_round(args, topology, f"r{r + 1}-{topology}-{kind}")
                results.setdefault((topology, kind), []).append(row)
                print_row(COLUMNS, str(r + 1), row)
    if args.rounds > 1:
        for rows in results.values():
            print_row(COLUMNS, "median", median_row(COLUMNS, rows, TEXT))


if __name__ == "__main__":
    main()
