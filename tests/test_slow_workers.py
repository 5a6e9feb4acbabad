"""A run whose worker is alive but slow is never dispatched again (issue 10), in every topology.

- A step that takes several lease TTLs, on a worker at capacity: the coordinator renews the
  leases of every run in flight, heartbeats or not, and a run waiting for a free slot holds no
  lease. Each run is dispatched once, each step executed once, the worker never dropped.
- A coordinator that stalls (here: SIGSTOP, as a long pause or a starved host would) while its
  worker heartbeats: the heartbeats wait unread, and the stall is not held against the worker.
- A runtime stalled past the lease TTL: an engine that did not run does not expire leases (all),
  but an engine that ran while the coordinator did not cannot tell it from a dead one and gives
  the run to another attempt (split): loudly, with the old attempt fenced.
- Where re-dispatch is right (the worker really went silent: an async step blocks its event
  loop), it is loud and bounded: after ``max_worker_losses`` losses in a row the run fails with
  ``WorkerLost`` instead of running the step again forever.

Heartbeats every 200 ms (tests/harness.py): a worker silent for 1 s is dropped. Waiting is on
log lines, side-effect lines and the run's final state; the only sleeps are the stalls under test.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
from harness import Cluster, LogFile, Proc, wait_run

WORKER = "tests/workers/slow_worker.py"
WORKER_ID = "slow-worker"
DROPPED = ("worker disconnected", "lost the coordinator", "reconnecting")
RE_DISPATCHED = (
    "lease expired",
    "run lost its worker",
    "lease of a run in flight is no longer current",
    "dispatched again",
    "lease lost",
)


def start(http: httpx.Client, function: str, seconds: float) -> str:
    response = http.post("/v1/runs", json={"function": function, "input": {"seconds": seconds}})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def effects(path: Path) -> list[tuple[str, ...]]:
    """The slow worker's ``dispatch <run> <attempt>`` and ``exec <run> <step>`` lines."""
    return [tuple(line.split()) for line in LogFile(path).lines()]


def coordinator(cluster: Cluster) -> Proc:
    return cluster.runtime_proc("all" if cluster.topology == "all" else "coordinator")


def engine(cluster: Cluster) -> Proc:
    return cluster.runtime_proc("all" if cluster.topology == "all" else "engine")


def records(proc: Proc, event: str) -> list[dict[str, Any]]:
    """The JSON log records of ``proc`` whose event starts with ``event``."""
    return [r for r in proc.log.records() if str(r.get("event", "")).startswith(event)]


def lines_with(proc: Proc, words: tuple[str, ...]) -> list[str]:
    return [line for line in proc.log.lines() if any(w in line for w in words)]


def stall(proc: Proc, seconds: float) -> None:
    """Stop ``proc`` (SIGSTOP) for ``seconds``, as a long pause of its host would."""
    proc.popen.send_signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the length of the stall under test, not a wait for something
    finally:
        proc.popen.send_signal(signal.SIGCONT)


def test_a_step_taking_several_lease_ttls_on_a_worker_at_capacity_runs_once(
    cluster: Cluster,
) -> None:
    path = cluster.workdir / "effects.log"
    # Leases of 1 s, renewed every 333 ms; the step takes 3 s (three TTLs). One slot.
    cluster.start(TRINE_LEASE_TTL_MS="1000")
    worker = cluster.start_worker(WORKER, SLOW_SIDE_EFFECT_LOG=str(path), SLOW_MAX_CONCURRENCY="1")
    with cluster.client() as http:
        first = start(http, "slow_step", 3)
        LogFile(path).wait_for(lambda line: line == f"exec {first} wait")
        second = start(http, "slow_step", 3)  # the worker is at capacity: it waits, unleased
        assert http.get(f"/v1/runs/{second}").json()["status"] == "pending"
        runs = [wait_run(http, run_id, timeout=60) for run_id in (first, second)]
    for run in runs:
        assert run["status"] == "completed", run
        assert run["result"] == "waited 3s"
        assert run["attempt"] == 1, run  # dispatched once
    assert effects(path) == [
        ("dispatch", first, "1"),
        ("exec", first, "wait"),
        ("dispatch", second, "1"),
        ("exec", second, "wait"),
    ]
    for proc in [*cluster.runtime, worker]:
        assert lines_with(proc, DROPPED + RE_DISPATCHED) == [], proc.log.tail()


def test_a_coordinator_that_stalls_does_not_drop_its_live_worker(cluster: Cluster) -> None:
    path = cluster.workdir / "effects.log"
    cluster.start()
    worker = cluster.start_worker(WORKER, SLOW_SIDE_EFFECT_LOG=str(path))
    with cluster.client() as http:
        run_id = start(http, "slow_step", 4)
        LogFile(path).wait_for(lambda line: line == f"exec {run_id} wait")
        # Seven heartbeat intervals without running: the worker's heartbeats wait unread.
        stall(coordinator(cluster), 1.5)
        run = wait_run(http, run_id, timeout=60)
    assert run["status"] == "completed", run
    assert run["attempt"] == 1, run
    assert effects(path) == [("dispatch", run_id, "1"), ("exec", run_id, "wait")]
    for proc in [*cluster.runtime, worker]:
        assert lines_with(proc, DROPPED + RE_DISPATCHED) == [], proc.log.tail()
    [warning] = records(coordinator(cluster), "the coordinator did not run for a while")
    assert warning["level"] == "warning"
    assert warning["stalled_s"] >= 1.0


def test_a_runtime_stalled_past_the_lease_ttl(cluster: Cluster) -> None:
    """All in one process, the engine stalls with the coordinator: it did not run, so it does
    not expire the leases it could not see renewed. Split, the engine runs on while the
    coordinator is stopped, exactly as if it had died: the run goes to another attempt, loudly,
    and the old attempt's report is refused."""
    path = cluster.workdir / "effects.log"
    cluster.start(TRINE_LEASE_TTL_MS="1000")
    worker = cluster.start_worker(WORKER, SLOW_SIDE_EFFECT_LOG=str(path))
    with cluster.client() as http:
        run_id = start(http, "slow_step", 4)
        LogFile(path).wait_for(lambda line: line == f"exec {run_id} wait")
        stall(coordinator(cluster), 3.0)  # three lease TTLs
        run = wait_run(http, run_id, timeout=60)
        journal = http.get(f"/v1/runs/{run_id}/journal").json()
    assert run["status"] == "completed", run
    assert run["result"] == "waited 4s"
    steps = [entry["name"] for entry in journal["entries"]]
    assert steps == ["wait"]  # one result recorded, whatever ran
    execs = [e for e in effects(path) if e[0] == "exec"]
    for proc in [*cluster.runtime, worker]:
        assert lines_with(proc, DROPPED) == [], proc.log.tail()
    if cluster.topology == "all":
        assert run["attempt"] == 1, run
        assert execs == [("exec", run_id, "wait")]
        assert records(engine(cluster), "lease expiry postponed")
        assert records(engine(cluster), "lease expired") == []
        return
    # Split: the engine could not tell the stopped coordinator from a dead one.
    assert len(execs) == 2  # the old attempt (fenced) and one new one
    expired = records(engine(cluster), "lease expired")
    assert expired, engine(cluster).log.tail()
    assert {(r["level"], r["run_id"], r["worker_id"]) for r in expired} == {
        ("warning", run_id, WORKER_ID)
    }
    assert all("not renewed for 1000 ms" in r["reason"] for r in expired)
    # Loud on the coordinator's side too (whichever it noticed first: the renewal that found
    # the lease gone, or the new attempt's dispatch), and the old attempt's report was refused.
    noticed = records(
        coordinator(cluster), "lease of a run in flight is no longer current"
    ) + records(coordinator(cluster), "run dispatched again to a worker")
    assert {(r["level"], r["run_id"], r["worker_id"]) for r in noticed} == {
        ("warning", run_id, WORKER_ID)
    }
    assert [line for line in worker.log.lines() if "lease lost; this attempt ends" in line]


def test_a_run_whose_step_blocks_its_workers_loop_fails_instead_of_running_forever(
    cluster: Cluster,
) -> None:
    path = cluster.workdir / "effects.log"
    cluster.start(TRINE_COORDINATOR_MAX_WORKER_LOSSES="2")
    worker = cluster.start_worker(WORKER, SLOW_SIDE_EFFECT_LOG=str(path))
    with cluster.client() as http:
        # The step blocks the worker's loop for 2 s: no heartbeat for twice the limit, so the
        # worker is rightly dropped, each time the step runs.
        run_id = start(http, "block_loop", 2)
        run = wait_run(http, run_id, timeout=60)
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "WorkerLost"
    message = run["error"]["message"]
    assert "lost 2 times in a row" in message
    assert f"worker {WORKER_ID}" in message
    assert "no heartbeat" in message
    assert [e for e in effects(path) if e[0] == "exec"] == [("exec", run_id, "block")] * 2
    lost = records(coordinator(cluster), "run lost its worker")
    assert [(r["level"], r["run_id"], r["worker_id"]) for r in lost] == [
        ("warning", run_id, WORKER_ID)
    ] * 2
    assert all(r["reason"].startswith("no heartbeat for") for r in lost)
    assert [r["losses_in_a_row"] for r in lost] == [1, 2]
    [failed] = records(coordinator(cluster), "run failed: its worker was lost")
    assert (failed["level"], failed["run_id"]) == ("error", run_id)
    # The worker said why, each time, long before the coordinator gave up on it.
    blocked = [line for line in worker.log.lines() if "event loop has been blocked" in line]
    assert len(blocked) == 2
    assert all(f"step 'block' of workflow 'block_loop' (run {run_id})" in b for b in blocked)
