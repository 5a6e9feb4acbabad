"""A transport from another distribution boots and carries real traffic, with no change to core."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness import ROOT, Cluster, start_order, wait_run

FIXTURE = ROOT / "tests" / "fixtures" / "counting-transport"


def test_third_party_transport_carries_a_run(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # Installed like any plugin, into a folder of its own (the test's venv stays untouched).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(FIXTURE),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    calls = tmp_path / "calls.log"
    cluster = Cluster(topology="all", workdir=tmp_path)
    cluster.extra_env.update(PYTHONPATH=str(site), TRINE_COUNTING_LOG=str(calls))
    try:
        cluster.start(
            "--connect", "backend=counting://main", "--connect", "dispatcher=counting://main"
        )
        wiring = next(
            r for r in cluster.runtime[0].log.records() if r.get("event") == "trine started"
        )
        assert wiring["wiring"]["gateway.backend"] == "counting://main"
        cluster.start_worker()
        with cluster.client() as http:
            run_id = start_order(http)
            assert wait_run(http, run_id)["status"] == "completed"
    finally:
        cluster.close()
    counted = Counter(calls.read_text().splitlines())
    assert counted["backend start_run"] == 1
    assert counted["dispatcher register_functions"] >= 1
    assert counted["dispatcher take_work"] >= 1
    assert counted["dispatcher report"] >= 2  # three steps and the result, batched or not
