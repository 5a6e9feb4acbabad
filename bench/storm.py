"""Whether a flood of HTTP requests holds up the runs: run latency and event-loop lag under load.

    .venv/bin/python bench/storm.py                              # all and split, 3 rounds
    .venv/bin/python bench/storm.py --topologies all --rounds 1 --seconds 5

For each round and topology, a fresh trine and one `examples/order_worker.py`, then two phases of
`--seconds` each: `quiet` (only the probe) and `flood` (the probe while `--clients` connections
send malformed `POST /v1/runs` bodies as fast as the gateway answers their 400s: work for the
gateway's HTTP parsing and nothing for the engine). The probe runs `order` one at a time
(`POST /v1/runs?wait=60`) on a connection of its own.

Columns:
  phase          quiet, or flood
  flood_rps      malformed requests answered per second
  probe_runs     probe runs completed in the phase
  p50_ms/p99_ms  the probe runs' latency
  lag_p50_ms, lag_p90_ms, lag_p99_ms, lag_max_ms  how late the loop of the process serving HTTP
                 ran its 0.1 s timer over the phase (trine_event_loop_lag_seconds; each a
                 bucket's upper bound): in `all` the loop every role shares, in `split` the
                 gateway's alone

`--requests-per-turn 0,16` runs each round once per value of the gateway's
`requests_per_turn` (0: no limit), in turn (column `per_turn`; by default the shipped value
only): what letting a bounded number of requests into the app per turn of the loop changes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Columns,
    lag_figures,
    loop_lag_buckets,
    median_row,
    per_turn_list,
    percentile,
    print_header,
    print_row,
    print_rows,
    running_cluster,
    topology_list,
)
from throughput import order_input

from trine_gateway.settings import REQUESTS_PER_TURN

MALFORMED = b'{"function": "order", "input": '
COLUMNS: Columns = [
    ("topology", "{}"),
    ("per_turn", "{}"),
    ("phase", "{}"),
    ("flood_rps", "{:.0f}"),
    ("probe_runs", "{:.0f}"),
    ("p50_ms", "{:.1f}"),
    ("p99_ms", "{:.1f}"),
    ("lag_p50_ms", "{:.0f}"),
    ("lag_p90_ms", "{:.0f}"),
    ("lag_p99_ms", "{:.0f}"),
    ("lag_max_ms", "{:.0f}"),
]
TEXT = ("topology", "per_turn", "phase")


async def phase(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """The probe for ``seconds``, beside ``clients`` flooding connections (none: quiet)."""
    flood = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    answered = 0
    async with flood, probe:
        lag0 = await loop_lag_buckets(probe, url)
        end = time.monotonic() + seconds

        async def flooder() -> None:
            nonlocal answered
            headers = {"content-type": "application/json"}
            while time.monotonic() < end:
                async with flood.post(f"{url}/v1/runs", data=MALFORMED, headers=headers) as r:
                    await r.read()
                    if r.status != 400:
                        raise RuntimeError(f"a malformed body was answered {r.status}")
                    answered += 1

        flooders = [asyncio.create_task(flooder()) for _ in range(clients)]
        took: list[float] = []
        i = 0
        while time.monotonic() < end:
            body = {"function": "order", "input": order_input(i)}
            started = time.perf_counter()
            async with probe.post(f"{url}/v1/runs?wait=60", json=body) as response:
                run = await response.json()
            if run.get("status") != "completed":
                raise RuntimeError(f"probe run {i}: {response.status} {run}")
            took.append((time.perf_counter() - started) * 1000)
            i += 1
        await asyncio.gather(*flooders)
        lag = lag_figures(lag0, await loop_lag_buckets(probe, url))
    return {
        "flood_rps": answered / seconds,
        "probe_runs": len(took),
        "p50_ms": percentile(took, 0.5),
        "p99_ms": percentile(took, 0.99),
        **lag,
    }


def one_round(topology: str, per_turn: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    env = {REQUESTS_PER_TURN.env: per_turn} if per_turn else {}
    with running_cluster(topology, topology, prefix="trine-storm-", env=env) as cluster:
        cluster.start_worker("order_worker.py")
        for name, clients in (("quiet", 0), ("flood", args.clients)):
            row = asyncio.run(phase(cluster.url, clients, args.seconds))
            shown = per_turn or str(REQUESTS_PER_TURN.default)
            rows.append({"topology": topology, "per_turn": shown, "phase": name, **row})
        cluster.stop_runtime()  # what the processes log after is the stop's doing
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--topologies", default="all,split", help="comma list of all,split")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=200, help="flooding connections")
    p.add_argument(
        "--requests-per-turn",
        default="",
        help="comma list of the gateway's requests_per_turn to run in turn (0: no limit)",
    )
    args = p.parse_args()
    try:
        per_turn_values = per_turn_list(args.requests_per_turn)
    except ValueError as exc:
        p.error(str(exc))
    rows: list[dict[str, Any]] = []
    print_header(COLUMNS)
    for number in range(1, args.rounds + 1):
        for topology in topology_list(args.topologies):
            # Every other round in reverse: later in a round the machine is warmer and busier.
            for per_turn in per_turn_values if number % 2 else per_turn_values[::-1]:
                for row in one_round(topology, per_turn, args):
                    rows.append(row)
                    print_row(COLUMNS, str(number), row)
    if args.rounds > 1:
        print("\nMedians over the rounds:\n")
        print_header(COLUMNS)
        keys = dict.fromkeys(tuple(r[k] for k in TEXT) for r in rows)
        medians = [
            median_row(COLUMNS, [r for r in rows if tuple(r[k] for k in TEXT) == key], TEXT)
            for key in keys
        ]
        print_rows(COLUMNS, "median", medians)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
