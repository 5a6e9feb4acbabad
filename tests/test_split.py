"""What only the split topology has: processes that fail apart from each other."""

from __future__ import annotations

import sys
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

from trine_core.testing import free_port


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


def test_two_coordinators_and_two_gateways_serve_one_engine(split: Cluster) -> None:
    """Several coordinators and gateways dial one engine: each coordinator's workers take their
    share of the work (the engine leases each run to one taker), a run started through either
    gateway is read through the other, and the runs of a coordinator killed with -9 are leased
    again (once their leases expire) to the other coordinator's worker, their old attempts
    fenced: no step acknowledged runs again."""
    split.start()
    second = {
        "TRINE_WORKER_ADDR": f"127.0.0.1:{free_port()}",
        "TRINE_COORDINATOR_ADDR": f"127.0.0.1:{free_port()}",
        "TRINE_HTTP_ADDR": f"127.0.0.1:{free_port()}",
    }
    cli = [sys.executable, "-m", "trine_core.cli"]
    extra = [
        split.spawn(f"trine-{target}-2", [*cli, f"--target={target}"], **second)
        for target in ("coordinator", "gateway")
    ]
    for proc in extra:
        proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
    effects = [split.workdir / "effects-1.log", split.workdir / "effects-2.log"]
    split.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects[0]), ORDER_STEP_DELAY_S="0.1")
    split.start_worker(
        ORDER_SIDE_EFFECT_LOG=str(effects[1]),
        ORDER_STEP_DELAY_S="0.1",
        TRINE_WORKER_ADDR=second["TRINE_WORKER_ADDR"],
    )
    other_url = f"http://{second['TRINE_HTTP_ADDR']}"
    with split.client() as http, httpx.Client(base_url=other_url, timeout=30) as other:
        ids = [start_order(http) for _ in range(10)] + [start_order(other) for _ in range(10)]
        for n, run_id in enumerate(ids):
            assert wait_run(other if n % 2 else http, run_id, timeout=60)["status"] == "completed"
        first_round = [side_effects(path) for path in effects]
        assert all(any(kind == "exec" for kind, _, _ in rows) for rows in first_round)
        # Now kill the second coordinator while its worker holds runs.
        batch = [start_order(other) for _ in range(10)]
        LogFile(effects[1]).wait_for(
            lambda line: line.startswith("ack") and line.split()[1] in batch
        )
        extra[0].kill9()
        for run_id in batch:
            assert wait_run(http, run_id, timeout=60)["status"] == "completed"
    # The second worker's acks all came before the kill, and the first worker took its runs
    # over only after (their leases expired): in this order the rows are in time order per run.
    rows = side_effects(effects[1]) + side_effects(effects[0])
    assert reexecuted_after_ack(rows) == []
    by_second = {r for k, r, _ in side_effects(effects[1]) if k == "exec"}
    by_first = {r for k, r, _ in side_effects(effects[0]) if k == "exec"}
    assert by_first & by_second & set(batch)  # a run begun through the killed one finished here
