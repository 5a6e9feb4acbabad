"""``own_loop = gateway`` (issue 15, item 5) end to end, in both topologies: in ``all`` the
gateway runs on a thread and event loop of its own and serves as before (a run started and
waited for, its event stream, ``/metrics`` collected on the roles' loop, an engine's error), and the
tokens it checks are still reloaded on SIGHUP, which only the main thread receives. In ``split``
the gateway's process runs no other role, so the setting changes nothing there (the boot line
says so) and the same requests pass."""

from __future__ import annotations

import json

import httpx
from harness import ORDER, Cluster, sse_events
from test_auth import TOKENS, bearer, gateway_proc, hup, write_tokens


def test_a_gateway_on_its_own_loop_serves_as_before(cluster: Cluster) -> None:
    path = write_tokens(cluster.workdir / "tokens.toml", *TOKENS)
    cluster.start(TRINE_OWN_LOOP="gateway", TRINE_AUTH_TOKENS_FILE=str(path))
    proc = gateway_proc(cluster)
    boot = json.loads(next(line for line in proc.log.lines() if "trine started" in line))
    assert boot["own_loop"] == (["gateway"] if cluster.topology == "all" else [])
    cluster.start_worker(TRINE_TOKEN=TOKENS["worker"])

    with httpx.Client(base_url=cluster.url, headers=bearer(TOKENS["admin"]), timeout=30) as http:
        started = http.post("/v1/runs?wait=30", json={"function": "order", "input": ORDER})
        assert started.status_code == 201, started.text
        run = started.json()
        assert run["status"] == "completed", run
        events = sse_events(http, run["id"])
        assert [e["event"] for e in events][-1] == "run.completed"
        assert sum(e["event"] == "step.completed" for e in events) == 3

        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        created = 'trine_http_request_duration_seconds_count{method="POST",route="/v1/runs",'
        assert created + 'status="201"} 1.0' in metrics.text  # recorded on the gateway's loop
        if cluster.topology == "all":  # the engine's, read on its own loop
            assert 'trine_runs_started_total{function="order"} 1.0' in metrics.text

        finished = http.post(f"/v1/runs/{run['id']}/cancel")  # the engine's error, carried back
        assert finished.status_code == 409, finished.text
        assert finished.json()["error"]["code"] == "run_finished"

        write_tokens(path, "writer", "admin", "worker")  # the reader is revoked
        hup(proc, "tokens file reloaded")
        revoked = http.get("/v1/runs", headers=bearer(TOKENS["reader"]))
        assert revoked.status_code == 401, revoked.text
    assert all(p.alive for p in cluster.runtime)
