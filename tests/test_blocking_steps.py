"""Blocking steps end to end, in every topology (issue 10, item 1): a sync step that sleeps 8 s
runs in a step thread, so the worker keeps heartbeating (every 200 ms here: the coordinator drops
a worker silent for 1 s), is never dropped, and the step executes exactly once; an async step
that blocks the event loop is named in the worker's loop-lag warning.

Waiting is on the run's final state and on log lines, never on sleeps.
"""

from __future__ import annotations

from typing import Any

import httpx
from harness import Cluster, side_effects, wait_run

WORKER = "tests/workers/blocking_worker.py"
DROPPED = ("worker disconnected", "lost the coordinator", "reconnecting")


def start(http: httpx.Client, function: str, data: Any) -> str:
    response = http.post("/v1/runs", json={"function": function, "input": data})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_a_sync_step_sleeping_8s_completes_once_without_dropping_the_worker(
    cluster: Cluster,
) -> None:
    effects = cluster.workdir / "effects.log"
    cluster.start()
    worker = cluster.start_worker(WORKER, BLOCKING_SIDE_EFFECT_LOG=str(effects))
    with cluster.client() as http:
        run_id = start(http, "sync_sleep", {"seconds": 8})
        final = wait_run(http, run_id, timeout=60)
    assert final["status"] == "completed", final
    assert final["result"] == "slept 8s"
    assert side_effects(effects) == [("exec", run_id, "sleep")]  # exactly once
    for proc in [*cluster.runtime, worker]:
        dropped = [line for line in proc.log.lines() if any(d in line for d in DROPPED)]
        assert dropped == [], f"{proc.name}: {dropped}"
    assert not [line for line in worker.log.lines() if "event loop has been blocked" in line]


def test_an_async_step_blocking_the_loop_2s_is_named_in_a_lag_warning(cluster: Cluster) -> None:
    # Heartbeats every second (dropped after 5 s of silence): the 2 s block is survived, and
    # the warning comes long before the coordinator would give up on the worker.
    cluster.start(TRINE_HEARTBEAT_INTERVAL_MS="1000")
    worker = cluster.start_worker(WORKER)
    with cluster.client() as http:
        run_id = start(http, "async_block", {"seconds": 2})
        warning = worker.log.wait_for(lambda line: "event loop has been blocked" in line)
        final = wait_run(http, run_id)
    assert "WARNING" in warning
    assert f"step 'block' of workflow 'async_block' (run {run_id})" in warning
    assert final["status"] == "completed", final
    ended = worker.log.wait_for(lambda line: "runs again after being blocked for" in line)
    # Measured from when the loop's next beat was due (up to a tick after the block began).
    assert float(ended.rsplit(" ", 1)[1].removesuffix("s")) >= 1.5, ended
