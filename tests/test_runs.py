"""A run end to end: start over HTTP, one worker process, SSE, journal, idempotency."""

from __future__ import annotations

import pytest
from harness import ORDER, Cluster, sse_events, start_order, wait_run

STEPS = ["validate", "charge", "ship"]


def test_three_step_run_completes_with_events_in_order(running: Cluster) -> None:
    with running.client() as http:
        response = http.post("/v1/runs", json={"function": "order", "input": ORDER})
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]

        run = wait_run(http, run_id)
        assert run["status"] == "completed"
        assert run["result"]["order_id"] == "o-1"
        assert [s["step"] for s in run["result"]["steps"]] == STEPS

        events = sse_events(http, run_id)
        kinds = [(e["event"], e["data"]["name"]) for e in events]
        assert kinds[0] == ("run.started", "order")
        completed_steps = [name for kind, name in kinds if kind == "step.completed"]
        assert completed_steps == STEPS
        assert kinds[-1][0] == "run.completed"
        ids = [int(e["id"]) for e in events]
        assert ids == list(range(1, len(events) + 1))

        journal = http.get(f"/v1/runs/{run_id}/journal").json()["entries"]
        assert [entry["name"] for entry in journal] == STEPS
        assert journal[1]["output"]["charged"] == 19.99


def test_sse_resume_with_last_event_id_has_no_gap_and_no_duplicate(running: Cluster) -> None:
    with running.client() as http:
        run_id = start_order(http)
        wait_run(http, run_id)
        everything = sse_events(http, run_id)
        assert len(everything) >= 5
        for cut in (1, 3, len(everything) - 1):
            first = sse_events(http, run_id, limit=cut)
            rest = sse_events(http, run_id, last_event_id=first[-1]["id"])
            assert first + rest == everything


def test_sse_follows_a_live_run_then_resumes(cluster: Cluster) -> None:
    """Subscribe while the run is in flight: live events arrive, and a reconnect resumes."""
    cluster.start()
    cluster.start_worker(ORDER_STEP_DELAY_S="0.2")
    with cluster.client() as http:
        run_id = start_order(http)
        first = sse_events(http, run_id, limit=2)
        assert http.get(f"/v1/runs/{run_id}").json()["status"] in ("pending", "running")
        rest = sse_events(http, run_id, last_event_id=first[-1]["id"])
        seqs = [int(e["id"]) for e in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1]["event"] == "run.completed"


def test_same_idempotency_key_gives_one_run_and_one_execution(
    running: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running.client() as http:
        body = {"function": "order", "input": ORDER}
        first = http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
        second = http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201
        assert second.status_code == 200
        assert first.json()["id"] == second.json()["id"]
        wait_run(http, first.json()["id"])
        runs = http.get("/v1/runs", params={"function": "order"}).json()["runs"]
        assert [r["id"] for r in runs] == [first.json()["id"]]


def test_wait_parameter_returns_the_result(running: Cluster) -> None:
    with running.client() as http:
        response = http.post(
            "/v1/runs", params={"wait": 20}, json={"function": "order", "input": ORDER}
        )
        assert response.status_code in (200, 201), response.text
        body = response.json()
        assert body["status"] == "completed"
        assert body["result"]["status"] == "completed"


def test_list_filters_and_paginates(running: Cluster) -> None:
    with running.client() as http:
        ids = [
            http.post(
                "/v1/runs", params={"wait": 20}, json={"function": "order", "input": ORDER}
            ).json()["id"]
            for _ in range(5)
        ]
        page1 = http.get("/v1/runs", params={"limit": 3, "status": "completed"}).json()
        page2 = http.get(
            "/v1/runs", params={"limit": 3, "page_token": page1["next_page_token"]}
        ).json()
        assert [r["id"] for r in page1["runs"] + page2["runs"]] == ids
        assert page2["next_page_token"] is None
        assert http.get("/v1/runs", params={"status": "failed"}).json()["runs"] == []


def test_cancel_a_pending_run(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.start_worker()
    worker.terminate()  # the function stays known; nothing will pick the run up
    with cluster.client() as http:
        run_id = start_order(http)
        cancelled = http.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        again = http.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "run_finished"
        assert sse_events(http, run_id)[-1]["event"] == "run.cancelled"
