"""What only the split topology has: processes that fail apart from each other."""

from __future__ import annotations

import time

import httpx
import pytest
from harness import (
    ORDER,
    Cluster,
    LogFile,
    reexecuted_after_ack,
    side_effects,
    sse_events,
    start_order,
    wait_run,
)


@pytest.fixture
def split(cluster: Cluster) -> Cluster:
    if cluster.topology != "split":
        pytest.skip("about processes failing apart: split topology only")
    # Leases of a killed coordinator's workers come back after this TTL (not the 30 s default).
    cluster.extra_env["TRINE_LEASE_TTL_MS"] = "2000"
    return cluster


def test_kill9_each_process_in_turn_under_load(split: Cluster) -> None:
    effects = split.workdir / "effects.log"
    split.start()
    split.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects), ORDER_STEP_DELAY_S="0.3")
    acks = LogFile(effects)
    with split.client() as http:
        ids = []
        watched = None
        seen: list[dict[str, object]] = []
        for target in ("engine", "coordinator", "gateway"):
            batch = [start_order(http) for _ in range(10)]
            ids += batch
            if watched is None:
                watched = batch[0]
                seen = sse_events(http, watched, limit=2)  # an SSE client mid-stream
            # Kill once this batch is under way: a first step acknowledged (each run has 0.6 s
            # of steps left), the rest in flight.
            acks.wait_for(lambda line, b=batch: line.startswith("ack") and line.split()[1] in b)
            split.restart(target)
        for run_id in ids:
            assert wait_run(http, run_id, timeout=60)["status"] == "completed"
        assert watched is not None
        rest = sse_events(http, watched, last_event_id=str(seen[-1]["id"]))
        seqs = [int(str(e["id"])) for e in seen + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1]["event"] == "run.completed"
    rows = side_effects(effects)
    assert reexecuted_after_ack(rows) == []
    reruns = sum(1 for k, _, _ in rows if k == "exec") - len(ids) * 3
    assert reruns > 0  # the kills hit steps in flight, which ran again: only those
    # A result is known durable once the next step's body starts (the last one's commits with
    # the run's end, which wait_run saw above).
    assert {(r, s) for k, r, s in rows if k == "ack"} == {
        (run_id, step) for run_id in ids for step in ("validate", "charge")
    }


def test_gateway_with_an_unreachable_engine_is_not_ready_then_recovers(split: Cluster) -> None:
    split.start()
    engine = split.runtime_proc("engine")
    engine.kill9()
    with split.client() as http:
        health = http.get("/healthz")
        assert health.status_code == 503
        assert "cannot reach" in health.json()["reason"]
        started = http.post("/v1/runs", json={"function": "order", "input": ORDER})  # refused
        assert started.status_code == 503
        assert started.json()["error"]["code"] == "unavailable"
        assert split.runtime_proc("gateway").alive
        assert split.runtime_proc("coordinator").alive
        split.restart("engine")
        assert ready_within(http, 10)


def ready_within(http: httpx.Client, seconds: float) -> bool:
    """Poll /healthz: readiness of a peer is only observable by asking it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if http.get("/healthz").status_code == 200:
            return True
        time.sleep(0.05)
    return False
