"""Durable waits end to end, in every topology: sleeps across a kill -9, signals, child runs,
cancellation in each waiting state, non-determinism, and the bad input around them.

The workers are real processes (examples/approval_worker.py, examples/fanout_worker.py); waits
are observed through the API (a run's ``status`` and ``waiting``), never through sleeps.
"""

from __future__ import annotations

from typing import Any

import httpx
from harness import (
    Cluster,
    send_signal,
    side_effects,
    sse_events,
    start_order,
    start_run,
    wait_run,
    wait_until,
    waiting_for,
)

APPROVAL = "approval_worker.py"
FANOUT = "fanout_worker.py"


def journal(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (
        http.get(f"/v1/runs/{run_id}/journal").raise_for_status().json()["entries"]
    )
    return entries


# -- timers ----------------------------------------------------------------------------------------


def test_a_sleep_survives_kill9_of_the_runtime_and_repeats_no_step(cluster: Cluster) -> None:
    effects = cluster.workdir / "effects.log"
    cluster.start()
    cluster.start_worker(APPROVAL, EXAMPLE_SIDE_EFFECT_LOG=str(effects))
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 4})
        sleeping = wait_until(http, run["id"], waiting_for("sleep"))
        due_ms = sleeping["waiting"][0]["until"]
        # The signal arrives during the sleep: kept, and taken when the run waits for it.
        kept = send_signal(http, run["id"], "approve", {"by": "ada"})
        assert kept.status_code == 202
        assert kept.json()["delivered"] is False
        cluster.kill9_runtime()
        cluster.start()
        final = wait_run(http, run["id"])
    assert final["status"] == "completed", final
    assert final["result"]["approval"] == {"by": "ada"}
    assert final["updated_at"] >= due_ms  # not before the timer
    execs = [step for kind, rid, step in side_effects(effects) if rid == run["id"]]
    assert execs == ["open_ticket"]  # journaled before the kill: never run again


def test_a_suspended_run_holds_no_worker_slot(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL, "--max-concurrency", "1")  # three runs wait at once
    with cluster.client() as http:
        runs = [start_run(http, "approval", {"sleep_s": 0}) for _ in range(3)]
        for run in runs:
            waiting = wait_until(http, run["id"], waiting_for("signal"))
            assert waiting["worker_id"] is None or waiting["worker_id"] == ""
            assert waiting["waiting"][0]["name"] == "approve"
        for run in runs:
            answer = send_signal(http, run["id"], "approve", {"run": run["id"]})
            assert answer.status_code == 202
            assert answer.json()["delivered"] is True
        for run in runs:
            final = wait_run(http, run["id"])
            assert final["result"]["approval"] == {"run": run["id"]}


# -- signals ---------------------------------------------------------------------------------------


def test_a_signal_wait_times_out(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL)
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 0, "timeout_s": 0.3})
        final = wait_run(http, run["id"])
        assert final["status"] == "completed"
        assert final["result"]["approved"] is False
        assert "no signal 'approve'" in final["result"]["reason"]
        events = [e["event"] for e in sse_events(http, run["id"])]
        assert events.index("signal.waiting") < events.index("signal.timed_out")
        [wait] = [e for e in journal(http, run["id"]) if e["kind"] == "signal"]
        assert wait["error"]["type"] == "SignalTimeout"


def test_signals_appear_in_the_journal_and_the_event_stream(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL)
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 0})
        wait_until(http, run["id"], waiting_for("signal"))
        assert send_signal(http, run["id"], "approve", {"ok": 1}).status_code == 202
        wait_run(http, run["id"])
        events = sse_events(http, run["id"])
        received = [e for e in events if e["event"] == "signal.received"]
        assert [e["data"]["data"]["payload"] for e in received] == [{"ok": 1}]
        kinds = [(e["kind"], e["name"]) for e in journal(http, run["id"])]
        assert kinds == [("step", "open_ticket"), ("sleep", "sleep"), ("signal", "approve")]


# -- child runs ------------------------------------------------------------------------------------


def test_fan_out_of_50_children_with_a_failing_one_handled(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(FANOUT)
    with cluster.client() as http:
        run = start_run(http, "fanout", {"n": 50, "fail": [7]})
        final = wait_run(http, run["id"], timeout=60)
        assert final["status"] == "completed", final
        assert final["result"]["sum"] == sum(i * i for i in range(50)) - 49
        [failed] = final["result"]["failed"]
        assert failed["index"] == 7
        assert "refused on purpose" in failed["message"]
        child = http.get(f"/v1/runs/{failed['child_run_id']}").json()
        assert child["status"] == "failed"
        assert child["parent_run_id"] == run["id"]
        children = [e for e in journal(http, run["id"]) if e["kind"] == "child"]
        assert len(children) == 50


# -- cancellation ----------------------------------------------------------------------------------


def test_cancel_a_pending_run_ends_it_at_once(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.start_worker(APPROVAL)
    worker.terminate()  # the function stays registered; nothing will take the run
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 0})
        answer = http.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "not needed"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        assert answer.json()["error"]["message"] == "not needed"


def test_cancel_a_running_step_interrupts_it(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(ORDER_STEP_DELAY_S="30")
    with cluster.client() as http:
        run_id = start_order(http)
        wait_until(http, run_id, lambda run: run["status"] == "running")
        sse_events(http, run_id, limit=2)  # run.started, step.started: inside the slow step
        answer = http.post(f"/v1/runs/{run_id}/cancel", json={})
        assert answer.status_code == 202, answer.text
        assert answer.json()["cancel_requested"] is True
        final = wait_run(http, run_id)  # well before the 30 s step would have ended
        assert final["status"] == "cancelled"
        [step] = journal(http, run_id)
        assert step["error"]["type"] == "Cancelled"


def test_cancel_a_sleeping_run_runs_its_cleanup(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL)
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 600})
        wait_until(http, run["id"], waiting_for("sleep"))
        assert http.post(f"/v1/runs/{run['id']}/cancel", json={}).status_code == 202
        final = wait_run(http, run["id"])
        assert final["status"] == "cancelled"
        names = [e["name"] for e in journal(http, run["id"])]
        assert names == ["open_ticket", "sleep", "close_ticket"]


def test_cancel_a_run_waiting_for_a_signal(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL)
    with cluster.client() as http:
        run = start_run(http, "approval", {"sleep_s": 0})
        wait_until(http, run["id"], waiting_for("signal"))
        assert http.post(f"/v1/runs/{run['id']}/cancel", json={}).status_code == 202
        assert wait_run(http, run["id"])["status"] == "cancelled"
        assert journal(http, run["id"])[-1]["name"] == "close_ticket"


def test_cancel_a_parent_cancels_its_children(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(FANOUT)
    with cluster.client() as http:
        run = start_run(http, "fanout", {"n": 5, "sleep_s": 600})
        parent = wait_until(http, run["id"], lambda r: r["status"] == "suspended")
        children = [w["child_run_id"] for w in parent["waiting"]]
        assert len(children) == 5
        for child in children:
            wait_until(http, child, waiting_for("sleep"))
        assert http.post(f"/v1/runs/{run['id']}/cancel", json={}).status_code == 202
        assert wait_run(http, run["id"])["status"] == "cancelled"
        for child in children:
            assert wait_run(http, child)["status"] == "cancelled"


# -- determinism and bad input ---------------------------------------------------------------------


def test_changed_code_under_a_waiting_run_blocks_it_with_a_non_determinism_error(
    cluster: Cluster,
) -> None:
    cluster.start()
    first = cluster.start_worker("tests/workers/changing_worker.py", CHANGING_VERSION="1")
    with cluster.client() as http:
        run = start_run(http, "changing", None)
        wait_until(http, run["id"], waiting_for("signal"))
        first.terminate()
        cluster.start_worker("tests/workers/changing_worker.py", CHANGING_VERSION="2")
        assert send_signal(http, run["id"], "go", None).status_code == 202
        # A workflow error holds the run (docs/versioning.md) rather than failing it for good.
        blocked = wait_until(http, run["id"], lambda r: r["status"] == "blocked")
    assert blocked["error"]["type"] == "NonDeterminismError"
    assert "step 'b'" in blocked["error"]["message"]
    assert "step 'a'" in blocked["error"]["message"]
    assert "ctx.patched(" in blocked["error"]["message"]


def test_bad_input_around_waits_gets_clear_errors(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(APPROVAL)
    with cluster.client() as http:
        unknown = send_signal(http, "01NOSUCHRUN0000000000000000", "approve", {})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "run_not_found"
        negative = start_run(http, "approval", {"sleep_s": -1})
        # A bad argument to a ctx call is a bug in the workflow's code: the run is held blocked
        # (docs/versioning.md) until fixed code retries it, or it is cancelled.
        blocked = wait_until(http, negative["id"], lambda r: r["status"] == "blocked")
        assert blocked["error"]["type"] == "ValueError"
        assert "non-negative" in blocked["error"]["message"]
        cancelled = http.post(f"/v1/runs/{negative['id']}/cancel", json={})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        finished = send_signal(http, negative["id"], "approve", {})
        assert finished.status_code == 409
        assert finished.json()["error"]["code"] == "run_finished"
        again = http.post(f"/v1/runs/{negative['id']}/cancel", json={})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "run_finished"
