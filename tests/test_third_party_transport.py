"""A transport from another distribution boots and carries real traffic, with no change to core.

``tests/fixtures/trine-transport-counting`` is installed like any plugin, into a folder of its
own (the test's virtualenv stays untouched), and ``trine`` finds it through its entry point once
that folder is on ``PYTHONPATH``. Every contract call it carries is appended to a log file.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness import ROOT, Cluster, sse_events, start_order, wait_run

FIXTURE = ROOT / "tests" / "fixtures" / "trine-transport-counting"
COUNTING = ("--connect", "backend=counting://main", "--connect", "dispatcher=counting://main")


def pip_install(project: Path, target: Path) -> None:
    """``pip install --no-deps --target``; offline when the build backend is already installed."""
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if importlib.util.find_spec("hatchling") is not None:
        argv.append("--no-build-isolation")
    result = subprocess.run(
        [*argv, str(project)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_third_party_transport_carries_a_run(tmp_path: Path) -> None:
    assert importlib.util.find_spec("trine_transport_counting") is None, "must come from the test"
    site = tmp_path / "site"
    pip_install(FIXTURE, site)
    assert list(site.glob("trine_transport_counting-*.dist-info"))

    calls = tmp_path / "calls.log"
    cluster = Cluster(topology="all", workdir=tmp_path)
    cluster.extra_env.update(PYTHONPATH=str(site), TRINE_COUNTING_LOG=str(calls))
    try:
        cluster.start(*COUNTING)
        started = next(
            r for r in cluster.runtime[0].log.records() if r.get("event") == "trine started"
        )
        assert started["wiring"] == {
            "coordinator.dispatcher": "counting://main",
            "gateway.backend": "counting://main",
            "gateway.worker_registry": "local",  # a want: the coordinator of this process
        }
        cluster.start_worker()
        with cluster.client() as http:
            run_id = start_order(http)
            assert wait_run(http, run_id)["status"] == "completed"
            assert sse_events(http, run_id)[-1]["event"] == "run.completed"
            missing = http.get(
                "/v1/runs/01NOSUCHRUN0000000000000000"
            )  # the engine's RunNotFound, carried
            assert missing.status_code == 404, missing.text
            assert missing.json()["error"]["code"] == "run_not_found"
    finally:
        cluster.close()

    counted = Counter(calls.read_text().splitlines())
    assert counted["backend start_run"] == 1
    assert counted["backend get_run"] >= 2  # each read of the run, and the 404
    assert counted["backend subscribe"] == 1
    assert counted["dispatcher register_functions"] >= 1
    assert counted["dispatcher take_work_stream"] >= 1
    assert counted["dispatcher report_batch"] >= 1
