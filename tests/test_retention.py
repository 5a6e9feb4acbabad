"""Retention (issue 14): with ``--retention 2s`` a finished run is deleted a few seconds after it
ended: ``GET /v1/runs/{id}`` answers 404 ``run_expired``, its event stream 410 ``run_expired``,
its journal 404; a run that has not finished (waiting for a signal) is untouched and still
completes. Both topologies (``TRINE_RETENTION``: in ``split`` the engine process uses it)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from harness import Cluster, start_order, start_run, wait_run

RETENTION_S = 2
DEADLINE_S = 30.0
"""How long the test waits for the sweep (it runs every half second with a 2s retention)."""


def wait_gone(http: httpx.Client, run_id: str) -> httpx.Response:
    """Poll the run until it stops answering 200; the answer that did."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = http.get(f"/v1/runs/{run_id}")
        if response.status_code != 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def test_a_finished_run_is_deleted_after_the_retention(cluster: Cluster) -> None:
    cluster.start(TRINE_RETENTION=f"{RETENTION_S}s")
    cluster.start_worker()
    cluster.start_worker("approval_worker.py")
    with cluster.client() as http:
        waiting = start_run(http, "approval", {"sleep_s": 0})["id"]
        done = start_order(http)
        finished = wait_run(http, done)
        assert finished["status"] == "completed"

        gone = wait_gone(http, done)
        assert gone.status_code == 404, gone.text
        assert error(gone)["code"] == "run_expired"
        assert "retention" in error(gone)["message"]
        assert error(gone)["details"]["retention"] == f"{RETENTION_S}s"

        stream = http.get(f"/v1/runs/{done}/events", headers={"Last-Event-ID": "1"})
        assert stream.status_code == 410, stream.text
        assert error(stream)["code"] == "run_expired"
        journal = http.get(f"/v1/runs/{done}/journal")
        assert journal.status_code == 404
        assert error(journal)["code"] == "run_expired"
        listed = http.get("/v1/runs", params={"limit": 100}).json()
        assert done not in {run["id"] for run in listed["runs"]}
        unknown = http.get("/v1/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        assert unknown.status_code == 404
        assert error(unknown)["code"] == "run_not_found"

        # the run waiting for its signal outlived several retentions: untouched, it completes
        assert http.get(f"/v1/runs/{waiting}").json()["status"] in ("suspended", "running")
        sent = http.post(f"/v1/runs/{waiting}/signals/approve", json={"by": "ada"})
        assert sent.status_code == 202, sent.text
        assert wait_run(http, waiting)["status"] == "completed"
