"""``GET /v1/workers`` end to end, in both topologies: real workers come, take runs and leave; and
a split gateway whose coordinator is not running."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from harness import DEFAULT_TIMEOUT, Cluster, Proc, start_order, wait_run

from trine_core.testing import free_port

Workers = dict[str, dict[str, Any]]


def listed(http: httpx.Client) -> Workers:
    response = http.get("/v1/workers")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unavailable"] == []
    return {worker["worker_id"]: worker for worker in body["workers"]}


def until(http: httpx.Client, what: str, check: Callable[[Workers], bool]) -> Workers:
    """The workers once ``check`` holds for them (the API is asked again until then)."""
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while True:
        workers = listed(http)
        if check(workers):
            return workers
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {DEFAULT_TIMEOUT}s: {workers}")
        time.sleep(0.05)


def worker_id(proc: Proc) -> str:
    """The SDK's default worker id (``hostname-pid-`` and a random suffix), as the worker logged
    it when it registered."""
    line = proc.log.wait_for(lambda text: "registered with the coordinator" in text, proc.popen)
    registered_as = line.split(" as ", 1)[1].split(" ", 1)[0]
    assert registered_as.startswith(f"{socket.gethostname()}-{proc.popen.pid}-")
    return registered_as


def iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_workers_are_listed_with_their_runs_in_flight_until_they_stop(cluster: Cluster) -> None:
    cluster.start()
    # Each order step takes 2 s: a run holds its slot for 6 s.
    order = cluster.start_worker(
        "order_worker.py", "--max-concurrency", "3", ORDER_STEP_DELAY_S="2"
    )
    approval = cluster.start_worker("approval_worker.py", "--max-concurrency", "5")
    order_id, approval_id = worker_id(order), worker_id(approval)
    with cluster.client() as http:
        workers = listed(http)
        assert set(workers) == {order_id, approval_id}
        shown = {
            name: (w["functions"], w["max_concurrency"], w["in_flight"], w["free_slots"])
            for name, w in workers.items()
        }
        assert shown == {order_id: (["order"], 3, 0, 3), approval_id: (["approval"], 5, 0, 5)}
        for worker in workers.values():
            assert worker["coordinator"] == cluster.worker_addr
            assert worker["session_id"]
            assert worker["sdk_version"]
            assert (worker["draining"], worker["runs"]) == (False, [])
            assert iso(worker["last_heartbeat_at"]) >= iso(worker["connected_at"])

        # A long run holds a slot of the order worker, in its first step.
        run_id = start_order(http)
        workers = until(
            http,
            "in a step",
            lambda ws: any(run["step"] for run in ws[order_id]["runs"]),
        )
        [run] = workers[order_id]["runs"]
        assert (run["run_id"], run["function"], run["attempt"]) == (run_id, "order", 1)
        assert run["step"] in ("validate", "charge", "ship")
        assert iso(run["since"]) >= iso(workers[order_id]["connected_at"])
        assert (workers[order_id]["in_flight"], workers[order_id]["free_slots"]) == (1, 2)

        # An approval run sleeps durably: suspended, it holds no slot.
        started = http.post(
            "/v1/runs", json={"function": "approval", "input": {"request": "r", "sleep_s": 600}}
        )
        assert started.status_code == 201, started.text
        sleeping = started.json()["id"]
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while http.get(f"/v1/runs/{sleeping}").json()["status"] != "suspended":
            assert time.monotonic() < deadline, "the approval run never slept"
            time.sleep(0.05)
        assert listed(http)[approval_id]["in_flight"] == 0

        # SIGTERM: the approval worker (nothing in flight) is gone at once.
        assert approval.terminate() == 0
        until(http, "without the approval worker", lambda ws: approval_id not in ws)

        # SIGTERM mid-run: the order worker drains (no free slot), finishes its run, is gone.
        order.popen.terminate()
        draining = until(http, "draining", lambda ws: ws[order_id]["draining"])[order_id]
        assert (draining["free_slots"], draining["in_flight"]) == (0, 1)
        until(http, "without the order worker", lambda ws: order_id not in ws)
        assert wait_run(http, run_id)["status"] == "completed"
        assert order.popen.wait(timeout=DEFAULT_TIMEOUT) == 0
        assert listed(http) == {}


def test_a_split_gateway_whose_coordinator_is_down_answers_503_for_workers_only(
    cluster: Cluster,
) -> None:
    if cluster.topology != "split":
        pytest.skip("a coordinator process apart from the gateway: split topology only")
    for target in ("engine", "gateway"):  # no coordinator process
        argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
        proc = cluster.spawn(f"trine-{target}", argv)
        cluster.runtime.append(proc)
        proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
    gateway = cluster.runtime_proc("gateway")
    registry = f"grpc://127.0.0.1:{cluster.coordinator_port}"
    assert any(registry in line for line in gateway.log.lines() if "trine started" in line)
    with cluster.client() as http:
        response = http.get("/v1/workers")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        assert f"cannot reach {registry}" in error["message"]
        # The rest of the API does not depend on the coordinator.
        assert http.get("/v1/runs").json() == {"runs": [], "next_page_token": None}
        assert http.get("/healthz").status_code == 200


def test_a_gateway_lists_the_workers_of_several_coordinators(cluster: Cluster) -> None:
    if cluster.topology != "split":
        pytest.skip("coordinators in processes of their own: split topology only")
    second_workers, second_registry = free_port(), free_port()
    registries = [
        f"grpc://127.0.0.1:{cluster.coordinator_port}",
        f"grpc://127.0.0.1:{second_registry}",
    ]
    roles = [
        ("engine", {}),
        ("coordinator", {}),
        (
            "coordinator",
            {
                "TRINE_WORKER_ADDR": f"127.0.0.1:{second_workers}",
                "TRINE_COORDINATOR_ADDR": f"127.0.0.1:{second_registry}",
            },
        ),
        ("gateway", {"TRINE_CONNECT_WORKER_REGISTRY": ",".join(registries)}),
    ]
    for target, env in roles:
        argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
        proc = cluster.spawn(f"trine-{target}", argv, **env)
        cluster.runtime.append(proc)
        proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
    first = cluster.start_worker("order_worker.py")
    second = cluster.start_worker(
        "approval_worker.py", TRINE_WORKER_ADDR=f"127.0.0.1:{second_workers}"
    )
    with cluster.client() as http:
        workers = listed(http)
        assert {name: (w["coordinator"], w["functions"]) for name, w in workers.items()} == {
            worker_id(first): (cluster.worker_addr, ["order"]),
            worker_id(second): (f"127.0.0.1:{second_workers}", ["approval"]),
        }
        assert wait_run(http, start_order(http))["status"] == "completed"
        # One coordinator stops: its workers are missing, and it is named.
        cluster.runtime[2].terminate()
        body = http.get("/v1/workers").json()
        assert [w["worker_id"] for w in body["workers"]] == [worker_id(first)]
        [down] = body["unavailable"]
        assert down["code"] == "unavailable"
        assert registries[1] in down["message"]
