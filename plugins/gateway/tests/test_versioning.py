"""The routes of docs/versioning.md: ``GET /v1/runs/{id}/history``, ``POST /v1/runs/{id}/retry``,
``POST /v1/runs/{id}/move`` and ``GET /v1/builds``, over the in-memory engine; and a blocked run
as ``GET /v1/runs/{id}`` shows it."""

from __future__ import annotations

import time

from conftest import Gateway, start
from drive import T0, requests, step_completed, step_failed

from trine_proto.trine.v1 import ErrorInfo, FunctionSpec, VersioningMode

BOOM = ErrorInfo(type="ValueError", message="card declined", traceback="Traceback …")
DRIFT = ErrorInfo(type="NonDeterminismError", message="at 1: journal has step 'a', code calls 'b'")


async def failed_at_its_second_step(gateway: Gateway) -> str:
    run_id = await start(gateway)
    await gateway.drive.report(
        run_id,
        step_completed(0, "reserve", {"ok": 1}),
        step_failed(1, "charge", BOOM),
    )
    await gateway.drive.fail(run_id, BOOM)
    return run_id


# -- history -------------------------------------------------------------------------------------


async def test_history_is_the_run_and_its_journal_as_the_api_reads_them(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_completed(0, "charge", {"charged": 5}))
    await gateway.drive.complete(run_id, {"ok": True})
    before = time.time()
    response = await gateway.http.get(f"/v1/runs/{run_id}/history")
    assert response.status_code == 200, response.text
    history = response.json()
    assert list(history) == ["format", "exported_at", "run", "journal"]
    assert history["format"] == "trine.history/1"
    exported = time.mktime(time.strptime(history["exported_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(exported - time.timezone - before) < 60  # the gateway's clock, not the engine's
    assert history["run"] == (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    journal = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert history["journal"] == journal
    assert [(e["kind"], e["name"], e["output"]) for e in journal] == [
        ("step", "charge", {"charged": 5})
    ]


async def test_history_of_an_unknown_run_is_404(gateway: Gateway) -> None:
    response = await gateway.http.get("/v1/runs/nope/history")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


# -- retry ---------------------------------------------------------------------------------------


async def test_retry_resumes_a_failed_run_from_its_failed_step(gateway: Gateway) -> None:
    run_id = await failed_at_its_second_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/retry", json={"reason": "fixed"})
    assert response.status_code == 200, response.text
    run = response.json()
    assert (run["id"], run["status"], run["error"], run["retries"]) == (run_id, "pending", None, 1)
    (sent,) = requests(gateway.memory, "retry_run")
    assert (sent.run_id, sent.reason) == (run_id, "fixed")
    journal = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert [entry["name"] for entry in journal] == ["reserve"]  # cut at the failed step
    # it runs again and completes
    await gateway.drive.report(run_id, step_completed(1, "charge", {"charged": 5}))
    await gateway.drive.complete(run_id, "done")
    done = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert (done["status"], done["result"], done["retries"]) == ("completed", "done", 1)


async def test_retry_without_a_body(gateway: Gateway) -> None:
    run_id = await failed_at_its_second_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/retry")
    assert response.status_code == 200, response.text
    (sent,) = requests(gateway.memory, "retry_run")
    assert sent.reason == ""


async def test_retry_of_a_run_neither_failed_nor_blocked_is_a_conflict(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/retry")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "run_not_retryable"
    assert "pending" in error["message"]
    await gateway.drive.complete(run_id, 1)
    again = await gateway.http.post(f"/v1/runs/{run_id}/retry")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "run_not_retryable")
    assert (await gateway.http.get(f"/v1/runs/{run_id}")).json()["retries"] == 0


async def test_retry_of_an_unknown_run_is_404_and_a_bad_body_400(gateway: Gateway) -> None:
    run_id = await failed_at_its_second_step(gateway)
    bad = await gateway.http.post(f"/v1/runs/{run_id}/retry", json={"reason": 5})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")
    assert requests(gateway.memory, "retry_run") == []  # refused before the engine
    missing = await gateway.http.post("/v1/runs/nope/retry")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "run_not_found")


async def test_a_blocked_run_shows_why_and_where_and_is_retried(gateway: Gateway) -> None:
    gateway.drive.build_id = "b-1"
    await gateway.drive.register(*gateway.memory.functions.values())
    run_id = await start(gateway)
    await gateway.drive.block(run_id, DRIFT)
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "blocked"
    assert run["error"]["type"] == "NonDeterminismError"
    assert (run["build_id"], run["blocked_build_id"]) == ("b-1", "b-1")
    listed = (await gateway.http.get("/v1/runs", params={"status": "blocked"})).json()["runs"]
    assert [r["id"] for r in listed] == [run_id]
    retried = await gateway.http.post(f"/v1/runs/{run_id}/retry")
    assert retried.status_code == 200, retried.text
    run = retried.json()
    assert (run["status"], run["blocked_build_id"], run["retries"]) == ("pending", None, 1)


# -- move and builds -----------------------------------------------------------------------------


async def pinned_run_on(gateway: Gateway, build_id: str) -> str:
    """A run of a pinned ``order``, first taken by a worker of ``build_id``."""
    gateway.drive.build_id = build_id
    await gateway.drive.register(FunctionSpec(name="order", versioning=VersioningMode.PINNED))
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_completed(0, "reserve", 1))
    return run_id


async def test_move_a_run_to_another_build(gateway: Gateway) -> None:
    run_id = await pinned_run_on(gateway, "b-1")
    gateway.drive.build_id = "b-2"
    await gateway.drive.register(FunctionSpec(name="order", versioning=VersioningMode.PINNED))
    response = await gateway.http.post(f"/v1/runs/{run_id}/move", json={"build_id": "b-2"})
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["build_id"]) == (run_id, "b-2")
    (sent,) = requests(gateway.memory, "move_run")
    assert (sent.run_id, sent.build_id) == (run_id, "b-2")


async def test_move_to_an_unknown_build_or_of_a_finished_run_is_a_conflict(
    gateway: Gateway,
) -> None:
    run_id = await pinned_run_on(gateway, "b-1")
    unknown = await gateway.http.post(f"/v1/runs/{run_id}/move", json={"build_id": "b-9"})
    assert unknown.status_code == 409, unknown.text
    error = unknown.json()["error"]
    assert error["code"] == "unknown_build"
    assert "b-9" in error["message"]
    assert (await gateway.http.get(f"/v1/runs/{run_id}")).json()["build_id"] == "b-1"
    await gateway.drive.complete(run_id, 1)
    finished = await gateway.http.post(f"/v1/runs/{run_id}/move", json={"build_id": "b-1"})
    assert (finished.status_code, finished.json()["error"]["code"]) == (409, "run_finished")
    missing = await gateway.http.post("/v1/runs/nope/move", json={"build_id": "b-1"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "run_not_found")


async def test_move_needs_a_build_id(gateway: Gateway) -> None:
    run_id = await start(gateway)
    for body in ({}, {"build_id": ""}, {"build_id": "a b"}, {"build_id": 7}, {"build": "b-1"}):
        response = await gateway.http.post(f"/v1/runs/{run_id}/move", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    no_body = await gateway.http.post(f"/v1/runs/{run_id}/move")
    assert no_body.status_code == 400, no_body.text
    assert requests(gateway.memory, "move_run") == []


async def test_builds_list_their_functions_open_runs_and_connection(gateway: Gateway) -> None:
    assert (await gateway.http.get("/v1/builds")).json() == {"builds": []}
    await pinned_run_on(gateway, "b-1")
    gateway.drive.build_id = "b-2"
    await gateway.drive.register(FunctionSpec(name="echo"))
    gateway.clock.now_ms = T0 + 60_000  # b-1 took work a minute ago; b-2 never did
    response = await gateway.http.get("/v1/builds")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "builds": [
            {
                "build_id": "b-1",
                "functions": ["order"],
                "open_runs": 1,
                "connected": False,
                "last_seen": "2023-11-14T22:13:20.123Z",
            },
            {
                "build_id": "b-2",
                "functions": ["echo"],
                "open_runs": 0,
                "connected": False,
                "last_seen": "2023-11-14T22:13:20.123Z",
            },
        ]
    }


async def test_a_pinned_run_whose_build_is_gone_waits_for_it(gateway: Gateway) -> None:
    run_id = await pinned_run_on(gateway, "b-1")
    await gateway.drive.release(run_id)  # b-1's worker stops
    gateway.clock.now_ms = T0 + 60_000
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert (run["status"], run["build_id"], run["waiting_for_build"]) == ("pending", "b-1", "b-1")


# -- listing -------------------------------------------------------------------------------------


async def test_list_runs_newest_first(gateway: Gateway) -> None:
    ids = [await start(gateway) for _ in range(3)]
    oldest = (await gateway.http.get("/v1/runs")).json()["runs"]
    assert [run["id"] for run in oldest] == ids
    newest = await gateway.http.get("/v1/runs", params={"newest_first": "true", "limit": 2})
    page = newest.json()
    assert [run["id"] for run in page["runs"]] == ids[::-1][:2]
    rest = await gateway.http.get(
        "/v1/runs", params={"newest_first": "true", "page_token": page["next_page_token"]}
    )
    assert [run["id"] for run in rest.json()["runs"]] == ids[:1]
    bad = await gateway.http.get("/v1/runs", params={"newest_first": "maybe"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")
