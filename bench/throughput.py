"""The `order` workload against trine: single-run latency and throughput, with process figures.

    .venv/bin/python bench/throughput.py                 # 200 sequential + 2,000 at concurrency 100
    .venv/bin/python bench/throughput.py --runs 500 --sequential 50 --rounds 3
    .venv/bin/python bench/throughput.py --topologies all,split --rounds 3   # side by side

Starts trine (`--target=all`, or engine, coordinator and gateway processes for `split`) and one
`examples/order_worker.py` process on free loopback ports and a fresh data dir, drives them over
HTTP from this process (POST /v1/runs?wait=…, one request per run, like the peers' clients), then
stops the runtime with SIGTERM so the engine logs its journal append percentiles. Prints one
markdown row per topology, phase and round, then the medians and the split/all ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import Cluster, Proc  # the tests' process harness, reused


def order_input(i: int) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer": "c-42",
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
        "amount": 19.99,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_figures(proc: Proc) -> dict[str, float]:
    """Peak RSS (MB) and CPU seconds of a live process, from /proc."""
    pid = proc.popen.pid
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"rss_mb": hwm_kb / 1024, "cpu_s": cpu}


async def one_run(http: aiohttp.ClientSession, url: str, i: int) -> float:
    start = time.perf_counter()
    body = {"function": "order", "input": order_input(i)}
    async with http.post(f"{url}/v1/runs?wait=60", json=body) as response:
        answer = await response.json()
    elapsed = time.perf_counter() - start
    if answer.get("status") != "completed" or answer["result"]["order_id"] != f"o-{i}":
        raise RuntimeError(f"run {i} did not complete: {response.status} {answer}")
    return elapsed


def session(concurrency: int) -> aiohttp.ClientSession:
    """aiohttp, as the peers' harness uses: httpx spends ~90% of a core at concurrency 100 and
    becomes the bottleneck it is meant to measure."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=120),
    )


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


def engine_stats(proc: Proc) -> dict[str, Any]:
    for record in proc.log.records():
        if record.get("event") == "engine stats":
            return record
    return {}


def one_round(args: argparse.Namespace, topology: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="trine-bench-") as tmp:
        cluster = Cluster(topology=topology, workdir=Path(tmp))
        try:
            cluster.start()
            worker = cluster.start_worker("order_worker.py", "--max-concurrency", "100")
            seq = asyncio.run(sequential(cluster.url, args.sequential))
            lat, wall = asyncio.run(concurrent(cluster.url, args.runs, args.concurrency))
            runtime = [proc_figures(proc) for proc in cluster.runtime]
            wk = proc_figures(worker)
            engine = next(p for p in cluster.runtime if p.name in ("trine-all", "trine-engine"))
            cluster.stop_runtime()
            stats = engine_stats(engine)
        finally:
            cluster.close()
    common = {
        "topology": topology,
        # Split: the three runtime processes summed (RSS of each is their peak).
        "runtime_rss_mb": sum(f["rss_mb"] for f in runtime),
        "worker_rss_mb": wk["rss_mb"],
        "runtime_cpu_s": sum(f["cpu_s"] for f in runtime),
        "worker_cpu_s": wk["cpu_s"],
        "append_p50_ms": stats.get("append_p50_ms", float("nan")),
        "append_p99_ms": stats.get("append_p99_ms", float("nan")),
    }
    return [
        {
            "phase": f"sequential x{args.sequential}",
            "runs_s": len(seq) / sum(seq),
            "p50_ms": percentile(seq, 0.5) * 1000,
            "p99_ms": percentile(seq, 0.99) * 1000,
            **common,
        },
        {
            "phase": f"{args.runs} @ c{args.concurrency}",
            "runs_s": args.runs / wall,
            "p50_ms": percentile(lat, 0.5) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000,
            **common,
        },
    ]


COLUMNS = [
    ("topology", "{}"),
    ("phase", "{}"),
    ("runs_s", "{:.0f}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("append_p50_ms", "{:.2f}"),
    ("append_p99_ms", "{:.2f}"),
    ("runtime_rss_mb", "{:.0f}"),
    ("worker_rss_mb", "{:.0f}"),
    ("runtime_cpu_s", "{:.1f}"),
    ("worker_cpu_s", "{:.1f}"),
]


def print_row(label: str, row: dict[str, Any]) -> None:
    cells = [label] + [fmt.format(row[key]) for key, fmt in COLUMNS]
    print("| " + " | ".join(cells) + " |", flush=True)


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
    args = p.parse_args()
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    print("| round | " + " | ".join(key for key, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    rounds: dict[str, list[list[dict[str, Any]]]] = {t: [] for t in topologies}
    for r in range(args.rounds):
        for topology in topologies:
            rows = one_round(args, topology)
            rounds[topology].append(rows)
            for row in rows:
                print_row(str(r + 1), row)
    medians = {t: [median_row(rs, i) for i in range(len(rs[0]))] for t, rs in rounds.items()}
    if args.rounds > 1:
        for rows in medians.values():
            for row in rows:
                print_row("median", row)
    if "all" in medians and "split" in medians:
        print("\n| phase | runs/s split ÷ all | p50 split ÷ all |\n|---|---|---|")
        for one, split in zip(medians["all"], medians["split"], strict=True):
            throughput = split["runs_s"] / one["runs_s"]
            print(f"| {one['phase']} | {throughput:.2f} | {split['p50_ms'] / one['p50_ms']:.2f} |")


def median_row(rounds: list[list[dict[str, Any]]], i: int) -> dict[str, Any]:
    first = rounds[0][i]
    numbers = {
        key: statistics.median(rows[i][key] for rows in rounds)
        for key, _ in COLUMNS
        if key not in ("phase", "topology")
    }
    return {"topology": first["topology"], "phase": first["phase"], **numbers}


if __name__ == "__main__":
    main()
