"""The side-by-side table of the last peer-harness run, with trine's ratios to every peer.

    make bench-peers      # the harness (../shared/bench/peers) with trine's two rows, then this

Runs under the harness's own virtualenv with the harness on PYTHONPATH (the Makefile does both),
and reuses its medians and table (``bench.driver``) rather than computing them again. Reads
``$PEERS_HOME/results/latest.json`` (default ``~/.cache/trine-peers``).
"""

from __future__ import annotations

import json
import os
import sys

from bench.driver import RESULTS, median_metrics, table  # the harness's

TRINE = (
    "peer_adapters.trine_all",
    "peer_adapters.trine_split",
    "peer_adapters.trine_all_tcp",  # workers over tcp:// (PEERS=…,peer_adapters.trine_all_tcp)
    "peer_adapters.trine_split_tcp",
)


def label(peer: str) -> str:
    return peer.removeprefix("peer_adapters.")


def ratio(ours: float | None, theirs: float | None) -> str:
    return "n/a" if not ours or not theirs else f"{ours / theirs:.2f}"


def main() -> int:
    path = os.path.join(RESULTS, "latest.json")
    with open(path) as f:
        run = json.load(f)
    peers = list(dict.fromkeys(r["peer"] for r in run["records"]))
    medians = {p: median_metrics([r for r in run["records"] if r["peer"] == p]) for p in peers}
    print(
        f"# Side by side ({path}; {run['params']['n_throughput']} runs at concurrency "
        f"{run['params']['concurrency']}, {run['params']['n_latency']} sequential; medians of "
        f"the rounds)\n"
    )
    print(table([(label(p), medians[p]) for p in peers]))
    ours = [p for p in TRINE if p in medians]
    if not ours:
        print("\n(no trine row: pass --peers …,peer_adapters.trine_all,peer_adapters.trine_split)")
        return 1
    print(
        "\ntrine's ratio to each system: throughput (runs/s, higher is better) and single-run "
        "p50 (lower is better)\n"
    )
    whats = ("runs/s ratio", "p50 ratio")
    head = ["system"] + [f"{label(t)} {what}" for t in ours for what in whats]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for peer in peers:
        if peer in TRINE:
            continue
        cells = [label(peer)]
        for t in ours:
            cells.append(ratio(medians[t]["tp_rps"], medians[peer]["tp_rps"]))
            cells.append(ratio(medians[t]["lat_p50"], medians[peer]["lat_p50"]))
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
