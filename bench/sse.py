"""SSE against trine: 2,000 then 10,000 concurrent event streams held by one gateway.

    .venv/bin/python bench/sse.py                                 # all and split, 2,000 and 10,000
    .venv/bin/python bench/sse.py --topologies all --streams 2000
    .venv/bin/python bench/sse.py --streams 200 --topologies all  # a quick look
    .venv/bin/python bench/sse.py --rounds 3 --workdir /tmp/sse   # keep the processes' logs

For each round, topology and N, a fresh trine (`--target=all`, or engine, coordinator and gateway
processes for `split`) on free loopback ports and a fresh data dir, plus one
`examples/approval_worker.py` worker, driven from this process (aiohttp); at the end the runtime
is stopped with SIGTERM. Phases, each bounded by `--timeout` seconds:

1. N `approval` runs are started with {"sleep_s": 0} (POST /v1/runs at `--concurrency`), then
   polled until none is pending or running (every 0.5 s).
2. One GET /v1/runs/{id}/events per run, all held at once on one unlimited connector (at most
   `--open-concurrency` opening at a time, until their first event). The events replay from
   seq 1, so the first one comes at once; each stream must then show `signal.waiting`.
3. All N held and idle for `--idle-s` seconds (default 20: longer than the gateway's 15 s
   keep-alive interval, so every stream gets at least one `: keep-alive` comment): the runtime
   processes' RSS and CPU over that window. Before opening, the same is read over a shorter
   window with no stream (the baseline: heartbeats and timers).
4. `approve` is sent to every run (POST /v1/runs/{id}/signals/approve, at `--concurrency`,
   payload {"by": "bench-sse", "i": i}); each stream must deliver `run.completed`, with that
   payload as the result's `approval`, and end.

Columns (one markdown row per round, topology and N; the medians when --rounds > 1):
  ok            streams that delivered run.completed with their own signal's payload / N
  start_s       phase 1: POST all N runs and see none pending or running
  open_s        phase 2: from the first GET until every stream had its first event
  open_gw_cpu_pct, open_client_cpu_pct  CPU % of the gateway process and of this one in phase 2
  lag_p99_ms, lag_max_ms  phase 2: how late the gateway process's event loop ran its 0.1 s
                timer (trine_event_loop_lag_seconds, p99 and max, each a bucket's upper bound):
                how long a heartbeat, a dispatch or a commit's answer waited there (in `all`
                every role shares that loop; in `split` it is the gateway's alone)
  rt_rss_mb     runtime RSS (current, MB, summed over split's three processes) with N held
  rss_each      the same per process (the RSS reported by /proc, VmRSS)
  gw_kb_stream  (gateway process RSS with N held - before opening) / N, in KB
  base_cpu_pct  runtime CPU % (of one core, summed in split) with no stream open
  idle_cpu_pct  runtime CPU % over the idle window with N held; gw_idle_cpu_pct the gateway's
  keepalives    `: keep-alive` comments received over the idle window, all streams
  signal_s      phase 4: POST all N signals
  p50_ms/p99_ms per stream: signal POST acknowledged (202) → its stream delivered run.completed
                and ended
  all_done_s    from the first signal POST until the last stream ended
  client_cpu_pct this process's CPU % in phase 4 (near 100: the client is a bottleneck)
  errors        HTTP failures, streams that failed, ended early or delivered a wrong result
Problems (each failure, error or warning lines in the processes' logs) go to stderr. The client,
the worker and the runtime share the machine's cores, so the figures include their competition
(and any other load on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Cluster,
    any_in,
    bounded,
    cpu_s,
    gateway_proc,
    lag_figures,
    loop_lag_buckets,
    median_row,
    percentile,
    print_header,
    print_row,
    rss_now_mb,
    running_cluster,
    session,
    start_runs,
    target,
    topology_list,
    warn,
)

FINAL_TYPES = ("run.completed", "run.failed", "run.cancelled")
SIGNAL = "approve"


@dataclass
class Stream:
    i: int
    run_id: str
    status: int = 0
    opened: float | None = None  # perf_counter at its first event
    waiting: bool = False  # saw signal.waiting
    keepalives: int = 0
    final_type: str = ""
    final_data: Any = None
    sent: float | None = None  # perf_counter when its signal POST was sent
    acked: float | None = None  # perf_counter when the signal POST answered 202
    closed: float | None = None  # perf_counter when the stream ended
    error: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        return {"by": "bench-sse", "i": self.i}

    def problem(self) -> str:
        """Why this stream is not a success, or ``""``."""
        if self.error:
            return self.error
        if self.final_type != "run.completed":
            return f"ended without run.completed (final {self.final_type or 'none'})"
        result = self.final_data if isinstance(self.final_data, dict) else {}
        if result.get("approval") != self.payload or result.get("approved") is not True:
            return f"wrong result {self.final_data!r}"
        if self.closed is None:
            return "not ended"
        if self.acked is None:
            return "its signal was not acknowledged"
        return ""


def stream_session() -> aiohttp.ClientSession:
    """Unlimited connections, no total timeout (streams are held for minutes); a read timeout
    of twice the keep-alive interval would catch a stream the gateway stopped feeding."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60),
    )


# -- phases ----------------------------------------------------------------------------------------


async def until_settled(url: str) -> None:
    """Until no approval run is pending or running (the caller bounds it)."""
    async with session(1) as http:
        while True:
            busy = await any_in(http, url, "approval", "pending") or await any_in(
                http, url, "approval", "running"
            )
            if not busy:
                return
            await asyncio.sleep(0.5)


async def follow(http: aiohttp.ClientSession, url: str, s: Stream, gate: asyncio.Semaphore) -> None:
    """Read one run's SSE stream until it ends; ``gate`` is held until its first event."""
    await gate.acquire()
    holding = True
    try:
        async with http.get(f"{url}/v1/runs/{s.run_id}/events") as response:
            s.status = response.status
            if response.status != 200:
                s.error = f"HTTP {response.status}: {(await response.text())[:300]}"
                return
            kind, data = "", ""
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    s.keepalives += 1
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and data:  # the end of an event
                    if s.opened is None:
                        s.opened = time.perf_counter()
                        gate.release()
                        holding = False
                    if kind == "signal.waiting":
                        s.waiting = True
                    elif kind in FINAL_TYPES:
                        s.final_type = kind
                        s.final_data = json.loads(data).get("data")
                    elif kind == "stream.error":
                        s.error = f"stream.error event: {data[:300]}"
                    kind, data = "", ""
            s.closed = time.perf_counter()
            if s.sent is None and not s.error:
                s.error = f"ended before its signal (final {s.final_type or 'none'})"
    except Exception as exc:
        s.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if holding:
            gate.release()


async def signal_all(url: str, streams: list[Stream], concurrency: int) -> list[str]:
    """POST the signal to every run; returns the failures."""
    failures: list[str] = []
    async with session(concurrency) as http:
        queue = iter(streams)

        async def client() -> None:
            for s in queue:
                post = f"{url}/v1/runs/{s.run_id}/signals/{SIGNAL}"
                s.sent = time.perf_counter()
                try:
                    async with http.post(post, json=s.payload) as response:
                        answer = await response.json()
                    if response.status == 202 and answer.get("delivered") is True:
                        s.acked = time.perf_counter()
                    elif response.status == 202:
                        s.acked = time.perf_counter()
                        failures.append(f"{s.run_id}: signal kept, not delivered: {answer}")
                    else:
                        failures.append(f"{s.run_id}: signal {response.status} {answer}")
                except Exception as exc:
                    failures.append(f"{s.run_id}: signal {type(exc).__name__}: {exc}")

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return failures


async def wait_streams(streams: list[Stream], until: str, seconds: float) -> bool:
    """Until every stream that has not failed satisfies ``until`` (polled every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(s.error or getattr(s, until) for s in streams):
            return True
        await asyncio.sleep(0.1)
    return False


async def hold_streams(
    args: argparse.Namespace, cluster: Cluster, ids: list[str], row: dict[str, Any]
) -> tuple[list[Stream], list[str]]:
    """Phases 2 to 4 on one event loop (the streams live across them); fills ``row``."""
    url, runtime, gateway = cluster.url, cluster.runtime, gateway_proc(cluster)
    streams = [Stream(i, run_id) for i, run_id in enumerate(ids)]
    failures: list[str] = []

    # Baseline: nothing open.
    base_rss = rss_now_mb(gateway)
    base_window = min(args.idle_s, 5.0)
    cpu0 = cpu_s(runtime)
    await asyncio.sleep(base_window)
    row["base_cpu_pct"] = (cpu_s(runtime) - cpu0) / base_window * 100

    async with stream_session() as http:
        gate = asyncio.Semaphore(args.open_concurrency)
        lag0 = await loop_lag_buckets(http, url)
        client0, gw0 = time.process_time(), cpu_s([gateway])
        t_open = time.perf_counter()
        tasks = [asyncio.create_task(follow(http, url, s, gate)) for s in streams]
        try:
            if not await wait_streams(streams, "opened", args.timeout):
                failures.append("not every stream had its first event by the deadline")
            opened = [s.opened for s in streams if s.opened is not None]
            row["open_s"] = max(opened, default=float("nan")) - t_open
            wall = time.perf_counter() - t_open
            row["open_gw_cpu_pct"] = (cpu_s([gateway]) - gw0) / wall * 100
            row["open_client_cpu_pct"] = (time.process_time() - client0) / wall * 100
            row.update(lag_figures(lag0, await loop_lag_buckets(http, url)))
            if not await wait_streams(streams, "waiting", args.timeout):
                late = sum(1 for s in streams if not s.error and not s.waiting)
                failures.append(f"{late} streams never showed signal.waiting by the deadline")

            # Held and idle.
            ka0 = sum(s.keepalives for s in streams)
            cpu0, gw0 = cpu_s(runtime), cpu_s([gateway])
            started = time.perf_counter()
            await asyncio.sleep(args.idle_s)
            idle = time.perf_counter() - started
            row["idle_cpu_pct"] = (cpu_s(runtime) - cpu0) / idle * 100
            row["gw_idle_cpu_pct"] = (cpu_s([gateway]) - gw0) / idle * 100
            row["keepalives"] = sum(s.keepalives for s in streams) - ka0
            held = {target(proc): rss_now_mb(proc) for proc in runtime}
            row["rt_rss_mb"] = sum(held.values())
            row["rss_each"] = " / ".join(f"{name} {mb:.0f}" for name, mb in held.items())
            row["gw_kb_stream"] = (held[target(gateway)] - base_rss) * 1024 / len(streams)
            dropped = [s for s in streams if s.closed is not None or s.error]
            if dropped:
                failures.append(f"{len(dropped)} streams ended or failed while held idle")

            # Signals.
            client0 = time.process_time()
            t_signal = time.perf_counter()
            failures += await bounded(
                "signals", args.timeout, signal_all(url, streams, args.concurrency)
            )
            row["signal_s"] = time.perf_counter() - t_signal
            _, pending = await asyncio.wait(tasks, timeout=args.timeout)
            for task in pending:
                task.cancel()
            for s in streams:
                if s.closed is None and not s.error:
                    s.error = "still open at the deadline"
            wall = time.perf_counter() - t_signal
            row["client_cpu_pct"] = (time.process_time() - client0) / wall * 100
            closed = [s.closed for s in streams if s.closed is not None]
            row["all_done_s"] = max(closed, default=float("nan")) - t_signal
            delays = [
                (s.closed - s.acked) * 1000
                for s in streams
                if s.closed is not None and s.acked is not None
            ] or [float("nan")]
            row["p50_ms"] = percentile(delays, 0.5)
            row["p99_ms"] = percentile(delays, 0.99)
            early = sum(1 for d in delays if d < 0)
            if early:
                warn(
                    f"{cluster.topology} x{len(streams)}: {early} streams ended before this "
                    "process saw their signal's 202 (negative delays, kept in the percentiles)"
                )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return streams, failures


def one_round(args: argparse.Namespace, topology: str, n: int, name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"topology": topology, "streams": n}
    # The N held streams are N connections: room for the signal POSTs beside them (the default
    # cap, gateway.max_connections, is 10,000).
    room = {"TRINE_GATEWAY_MAX_CONNECTIONS": str(n + 2 * args.concurrency + 100)}
    with running_cluster(topology, name, args.workdir, env=room) as cluster:
        cluster.start_worker("approval_worker.py")
        t0 = time.perf_counter()
        approvals = [
            {"function": "approval", "input": {"request": f"r-{i}", "sleep_s": 0}} for i in range(n)
        ]
        started = start_runs(cluster.url, approvals, args.concurrency)
        ids = asyncio.run(bounded("starting runs", args.timeout, started))
        asyncio.run(bounded("runs settling", args.timeout, until_settled(cluster.url)))
        row["start_s"] = time.perf_counter() - t0
        streams, failures = asyncio.run(hold_streams(args, cluster, ids, row))
        cluster.stop_runtime()
    bad = [(s, why) for s in streams if (why := s.problem())]
    for what in failures[:10]:
        warn(f"{topology} x{n}: {what}")
    if bad:
        warn(f"{topology} x{n}: {len(bad)} of {n} streams failed, e.g.:")
        for s, why in bad[:5]:
            warn(f"  {s.run_id} (HTTP {s.status}): {why}")
    row["ok"] = f"{n - len(bad)}/{n}"
    row["errors"] = len(bad) + len(failures)
    return row


# -- the table -------------------------------------------------------------------------------------


COLUMNS = [
    ("topology", "{}"),
    ("streams", "{}"),
    ("ok", "{}"),
    ("start_s", "{:.1f}"),
    ("open_s", "{:.2f}"),
    ("open_gw_cpu_pct", "{:.0f}"),
    ("open_client_cpu_pct", "{:.0f}"),
    ("lag_p99_ms", "{:.0f}"),
    ("lag_max_ms", "{:.0f}"),
    ("rt_rss_mb", "{:.0f}"),
    ("rss_each", "{}"),
    ("gw_kb_stream", "{:.1f}"),
    ("base_cpu_pct", "{:.1f}"),
    ("idle_cpu_pct", "{:.1f}"),
    ("gw_idle_cpu_pct", "{:.1f}"),
    ("keepalives", "{:.0f}"),
    ("signal_s", "{:.1f}"),
    ("p50_ms", "{:.0f}"),
    ("p99_ms", "{:.0f}"),
    ("all_done_s", "{:.2f}"),
    ("client_cpu_pct", "{:.0f}"),
    ("errors", "{:.0f}"),
]
TEXT = ("topology", "streams", "ok", "rss_each")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", default="2000,10000", help="comma list of N (streams at once)")
    p.add_argument("--topologies", default="all,split", help="comma list of all,split")
    p.add_argument("--concurrency", type=int, default=100, help="run and signal POSTs at once")
    p.add_argument("--open-concurrency", type=int, default=100, help="streams opening at once")
    p.add_argument("--idle-s", type=float, default=20.0, help="the idle window with N held")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each phase may take")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workdir", help="keep each cluster's data and logs under this new dir")
    args = p.parse_args()
    topologies = topology_list(args.topologies)
    sizes = [int(n) for n in args.streams.split(",") if n.strip()]
    print_header(COLUMNS)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for topology in topologies:
            for n in sizes:
                row = one_round(args, topology, n, f"r{r + 1}-{topology}-{n}")
                results.setdefault((topology, n), []).append(row)
                print_row(COLUMNS, str(r + 1), row)
    if args.rounds > 1:
        for rows in results.values():
            print_row(COLUMNS, "median", median_row(COLUMNS, rows, TEXT))


if __name__ == "__main__":
    main()
