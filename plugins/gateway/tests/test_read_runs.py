"""``GET /v1/runs/{id}`` (long polls, errors, waits, parents) and ``GET /v1/runs`` (pages,
filters)."""

from __future__ import annotations

import asyncio

from conftest import Gateway, start
from drive import T0, sleep, start_child, wait_signal

from trine_proto.trine.v1 import ErrorInfo, FunctionSpec


async def test_get_run_and_long_poll_until_final(gateway: Gateway) -> None:
    run_id = await start(gateway)
    now = await gateway.http.get(f"/v1/runs/{run_id}")
    assert now.status_code == 200
    assert now.json()["id"] == run_id

    poll = asyncio.create_task(gateway.http.get(f"/v1/runs/{run_id}", params={"wait": 30}))
    await gateway.memory.called("wait_run")
    await gateway.drive.complete(run_id, {"ok": True})
    response = await poll
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == {"ok": True}


async def test_long_poll_that_runs_out_answers_the_run_as_it_is(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.get(f"/v1/runs/{run_id}", params={"wait": 0.05})
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


async def test_failed_run_carries_its_error(gateway: Gateway) -> None:
    run_id = await start(gateway)
    error = ErrorInfo(type="ValueError", message="card declined", traceback="Traceback …")
    await gateway.drive.fail(run_id, error)
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "failed"
    assert run["result"] is None
    assert run["error"] == {
        "type": "ValueError",
        "message": "card declined",
        "traceback": "Traceback …",
    }


async def test_a_suspended_run_shows_what_it_waits_for(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.register(FunctionSpec(name="ship"))
    await gateway.drive.suspend_on(
        run_id,
        sleep(0, until_ms=1_700_000_060_000),
        wait_signal(1, "approved", timeout_ms=1_700_000_120_500 - T0),
        start_child(2, "ship"),
    )
    child_run_id = await gateway.drive.child_of(run_id, 2)
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "suspended"
    assert run["waiting"] == [
        {
            "kind": "sleep",
            "index": 0,
            "name": "sleep",
            "until": "2023-11-14T22:14:20.000Z",
            "child_run_id": None,
        },
        {
            "kind": "signal",
            "index": 1,
            "name": "approved",
            "until": "2023-11-14T22:15:20.500Z",
            "child_run_id": None,
        },
        {
            "kind": "child",
            "index": 2,
            "name": "ship",
            "until": None,
            "child_run_id": child_run_id,
        },
    ]
    entries = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert [(e["kind"], e["pending"], e["until"], e["child_run_id"]) for e in entries] == [
        ("sleep", True, "2023-11-14T22:14:20.000Z", None),
        ("signal", True, "2023-11-14T22:15:20.500Z", None),
        ("child", True, None, child_run_id),
    ]
    assert all(e["output"] is None and e["error"] is None for e in entries)


async def test_child_run_names_its_parent(gateway: Gateway) -> None:
    parent_run_id = await start(gateway)
    await gateway.drive.suspend_on(parent_run_id, start_child(0, "order"))
    run_id = await gateway.drive.child_of(parent_run_id, 0)
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["parent_run_id"] == parent_run_id


async def test_list_runs_pages_and_filters(gateway: Gateway) -> None:
    ids = []
    for i in range(5):
        function = "echo" if i % 2 else "order"
        response = await gateway.http.post("/v1/runs", json={"function": function, "input": i})
        ids.append(response.json()["id"])
    for i in (1, 3):  # the echo runs end with their input
        await gateway.drive.complete(ids[i], i)

    everything = (await gateway.http.get("/v1/runs")).json()
    assert [r["id"] for r in everything["runs"]] == ids
    assert everything["next_page_token"] is None

    page1 = (await gateway.http.get("/v1/runs", params={"limit": 2})).json()
    assert [r["id"] for r in page1["runs"]] == ids[:2]
    assert page1["next_page_token"] == ids[1]
    page2 = (await gateway.http.get("/v1/runs", params={"limit": 2, "page_token": ids[1]})).json()
    assert [r["id"] for r in page2["runs"]] == ids[2:4]

    completed = (await gateway.http.get("/v1/runs", params={"status": "completed"})).json()
    assert [r["id"] for r in completed["runs"]] == [ids[1], ids[3]]
    orders = (await gateway.http.get("/v1/runs", params={"function": "order"})).json()
    assert [r["id"] for r in orders["runs"]] == [ids[0], ids[2], ids[4]]
    none = (await gateway.http.get("/v1/runs", params={"status": "failed"})).json()
    assert none == {"runs": [], "next_page_token": None}


async def test_list_runs_refuses_bad_query_values(gateway: Gateway) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"status": "sleeping"}):
        response = await gateway.http.get("/v1/runs", params=params)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"]["errors"]


async def test_list_runs_filters_suspended_runs(gateway: Gateway) -> None:
    ids = [await start(gateway) for _ in range(3)]
    await gateway.drive.suspend_on(ids[1], wait_signal(0, "go"))
    response = await gateway.http.get("/v1/runs", params={"status": "suspended"})
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert [r["id"] for r in runs] == [ids[1]]
    assert runs[0]["waiting"][0]["name"] == "go"
