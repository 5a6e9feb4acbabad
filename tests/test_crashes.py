"""Nothing acknowledged is lost or repeated when a process is killed with SIGKILL."""

from __future__ import annotations

from harness import (
    Cluster,
    LogFile,
    reexecuted_after_ack,
    side_effects,
    sse_events,
    start_order,
    wait_run,
)

STEPS = ("validate", "charge", "ship")


def test_kill9_runtime_mid_flight_loses_nothing_and_repeats_no_acked_step(cluster: Cluster) -> None:
    effects = cluster.workdir / "effects.log"
    cluster.start()
    cluster.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects), ORDER_STEP_DELAY_S="0.05")
    with cluster.client() as http:
        ids = [start_order(http, order_id=str(i)) for i in range(30)]
        # Kill once some steps were acknowledged and most runs are still in flight.
        LogFile(effects).wait_for(lambda line: line.startswith("ack"))
        cluster.kill9_runtime()
        cluster.start()  # same data dir; the worker reconnects by itself
        for run_id in ids:
            run = wait_run(http, run_id)
            assert run["status"] == "completed", run
            assert [s["step"] for s in run["result"]["steps"]] == list(STEPS)
    rows = side_effects(effects)
    assert reexecuted_after_ack(rows) == []
    executed = {(run_id, step) for kind, run_id, step in rows if kind == "exec"}
    assert len(executed) == 30 * 3


def test_kill9_worker_mid_step_second_worker_finishes_only_unacked_step_reruns(
    cluster: Cluster,
) -> None:
    effects = cluster.workdir / "effects.log"
    cluster.start()
    slow = cluster.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects), ORDER_STEP_DELAY_S="1.0")
    with cluster.client() as http:
        run_id = start_order(http)
        # Wait until the second step's body runs: the first one's result is durable by then
        # (its step.started event is committed with that result, before the body begins).
        started = sse_events(http, run_id, limit=4)  # run.started, step.started/completed, started
        assert [e["event"] for e in started][-1] == "step.started"
        assert started[-1]["data"]["name"] == "charge"
        LogFile(effects).wait_for(lambda line: line.split()[::2] == ["exec", "charge"])
        slow.kill9()
        cluster.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects))
        run = wait_run(http, run_id)
        assert run["status"] == "completed"
    rows = side_effects(effects)
    assert reexecuted_after_ack(rows) == []
    execs = [step for kind, rid, step in rows if kind == "exec" and rid == run_id]
    assert execs.count("validate") == 1  # acknowledged before the kill: never again
    assert execs.count("charge") == 2  # in flight when killed: the only rerun
    assert execs.count("ship") == 1


def test_run_waits_for_a_worker_and_known_functions_survive_restart(cluster: Cluster) -> None:
    cluster.start()
    assert cluster.start_worker().terminate() == 0  # registers `order`, drains, leaves
    assert set(cluster.stop_runtime()) == {0}  # SIGTERM: every process shuts down cleanly
    cluster.start()
    with cluster.client() as http:
        run_id = start_order(http)  # accepted: known, though no worker is here
        assert http.get(f"/v1/runs/{run_id}").json()["status"] == "pending"
        cluster.start_worker()
        assert wait_run(http, run_id)["status"] == "completed"
