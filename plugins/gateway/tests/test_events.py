"""``GET /v1/runs/{id}/events``: SSE framing, resume, end of stream, keep-alive, disconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Gateway, start
from drive import (
    T0,
    emit,
    requests,
    run_completed,
    sleep,
    start_child,
    step_completed,
    step_started,
    wait_signal,
)
from sse_client import SseReader, read_sse

from trine_core import Unavailable
from trine_gateway.events_front import EventsFront


async def test_events_are_framed_and_the_stream_ends_after_the_final_one(gateway: Gateway) -> None:
    run_id = await start(gateway)
    gateway.clock.now_ms = T0 + 1
    await gateway.drive.report(
        run_id, step_completed(0, "charge", 19.99), run_completed({"ok": True})
    )
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        raw = (await response.aread()).decode()
    assert raw.startswith("id: 1\r\nevent: run.started\r\ndata: {")
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        sse = await read_sse(response)
    assert sse.ended
    assert [(e["id"], e["event"]) for e in sse.events] == [
        ("1", "run.started"),
        ("2", "step.completed"),
        ("3", "run.completed"),
    ]
    assert sse.events[1]["data"] == {
        "seq": 2,
        "type": "step.completed",
        "name": "charge",
        "data": {"index": 0, "attempt": 1, "output": 19.99},
        "at": "2023-11-14T22:13:20.124Z",
    }
    assert sse.events[0]["data"]["data"] == {"function": "order"}
    assert gateway.memory.open_subscriptions == 0


async def test_live_events_follow_then_the_stream_ends(gateway: Gateway) -> None:
    run_id = await start(gateway)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        reader = SseReader(response)
        first = await reader.read(limit=1)
        assert [e["event"] for e in first.events] == ["run.started"]
        await gateway.drive.report(run_id, emit("progress", {"pct": 50}))
        second = await reader.read(limit=1)
        assert second.events[0]["data"]["name"] == "progress"
        await gateway.drive.complete(run_id, 1)
        rest = await reader.read()
    assert rest.ended
    assert [e["event"] for e in rest.events] == ["run.completed"]


@pytest.mark.parametrize("cut", [1, 2, 3])
async def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(
    gateway: Gateway, cut: int
) -> None:
    run_id = await start(gateway)
    for index, step in enumerate(("a", "b")):
        await gateway.drive.report(run_id, step_completed(index, step, None))
    await gateway.drive.complete(run_id, None)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        everything = (await read_sse(response)).events
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        first = (await read_sse(response, limit=cut)).events
    headers = {"Last-Event-ID": first[-1]["id"]}
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        rest = await read_sse(response)
    assert rest.ended
    assert first + rest.events == everything


async def test_after_query_and_the_header_wins(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.report(run_id, step_started(0, "a"))
    await gateway.drive.complete(run_id, None)
    url = f"/v1/runs/{run_id}/events"
    async with gateway.http.stream("GET", url, params={"after": 2}) as response:
        assert [e["id"] for e in (await read_sse(response)).events] == ["3"]
    async with gateway.http.stream(
        "GET", url, params={"after": 2}, headers={"Last-Event-ID": "1"}
    ) as response:
        assert [e["id"] for e in (await read_sse(response)).events] == ["2", "3"]
    async with gateway.http.stream("GET", url, params={"after": 3}) as response:
        sse = await read_sse(response)
    assert sse.ended
    assert sse.events == []


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"after": "-1"}, {}), ({"after": "x"}, {}), ({}, {"Last-Event-ID": "three"})],
)
async def test_bad_resume_points(
    gateway: Gateway, params: dict[str, str], headers: dict[str, str]
) -> None:
    run_id = await start(gateway)
    response = await gateway.http.get(f"/v1/runs/{run_id}/events", params=params, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


async def test_unknown_run_is_a_404_before_streaming(gateway: Gateway) -> None:
    response = await gateway.http.get("/v1/runs/01NOSUCHRUN0000000000000000/events")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "run_not_found"
    assert requests(gateway.memory, "subscribe") == []


@pytest.mark.parametrize("keepalive_s", [0.05])
async def test_idle_stream_sends_keep_alive_comments(gateway: Gateway) -> None:
    run_id = await start(gateway)
    async with gateway.http.stream(
        "GET", f"/v1/runs/{run_id}/events", params={"after": 1}
    ) as response:
        reader = SseReader(response)
        sse = await reader.read(until_comment=True)
        assert sse.events == []
        assert sse.comments == ["keep-alive"]
        await gateway.drive.complete(run_id, None)
        rest = await reader.read()
    assert rest.ended
    assert [e["event"] for e in rest.events] == ["run.completed"]


async def test_client_disconnect_closes_the_subscription(gateway: Gateway) -> None:
    run_id = await start(gateway)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        await read_sse(response, limit=1)
        assert gateway.memory.open_subscriptions == 1
        pumps = gateway.lifecycle.tasks
        assert len(pumps) == 1
    # leaving the block closes the connection mid-stream
    await gateway.memory.until(lambda: gateway.memory.open_subscriptions == 0, timeout_s=10)
    await asyncio.wait(pumps, timeout=10)
    assert gateway.memory.open_subscriptions == 0
    assert gateway.lifecycle.open_tasks == 0


async def test_subscription_failure_mid_stream_is_an_error_event(gateway: Gateway) -> None:
    run_id = await start(gateway)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        reader = SseReader(response)
        await reader.read(limit=1)
        gateway.memory.fail_with = Unavailable("engine went away")  # the open subscription too
        sse = await reader.read()
    assert sse.ended
    assert sse.events[-1]["event"] == "stream.error"
    assert sse.events[-1]["data"] == {
        "error": {"code": "unavailable", "message": "engine went away"}
    }


async def test_durable_event_types_pass_through(gateway: Gateway) -> None:
    types = [
        "timer.started",
        "timer.fired",
        "signal.waiting",
        "signal.received",
        "signal.timed_out",
        "child.started",
        "child.finished",
        "run.cancel_requested",
    ]
    run_id = await start(gateway)
    drive = gateway.drive
    await drive.suspend_on(run_id, sleep(0, until_ms=T0 + 10))
    gateway.clock.now_ms = T0 + 10
    gateway.memory.fire_timers()
    await drive.suspend_on(run_id, wait_signal(1, "go", timeout_ms=10))
    await gateway.http.post(f"/v1/runs/{run_id}/signals/other")  # kept: the run waits for "go"
    gateway.clock.now_ms = T0 + 20
    gateway.memory.fire_timers()
    await drive.suspend_on(run_id, start_child(2, "echo"))
    await drive.complete(await drive.child_of(run_id, 2), "shipped")
    await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    await drive.cancelled(run_id)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        sse = await read_sse(response)
    assert sse.ended
    assert [e["event"] for e in sse.events] == ["run.started", *types, "run.cancelled"]
    assert [e["data"]["type"] for e in sse.events[1:-1]] == types


async def test_plain_streams_are_served_before_litestar_and_the_rest_by_it(
    gateway: Gateway,
) -> None:
    """``trine_gateway.events_front``: a plain request never reaches litestar's router and gets
    the route's status line, headers and body; any other is litestar's (the route's answers)."""
    front = gateway.server.app.asgi_handler
    assert isinstance(front, EventsFront)
    reached: list[str] = []
    litestar = front.app

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"] + "?" + scope["query_string"].decode())
        await litestar(scope, receive, send)

    front.app = counting
    try:
        run_id = await start(gateway)
        await gateway.drive.complete(run_id, None)
        reached.clear()
        url = f"/v1/runs/{run_id}/events"
        for params, headers in [
            ({}, {}),
            ({"after": 1}, {}),
            ({"after": 9}, {"Last-Event-ID": "0"}),
        ]:
            async with gateway.http.stream("GET", url, params=params, headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
                assert response.headers["cache-control"] == "no-cache"
                assert response.headers["x-accel-buffering"] == "no"
                assert (await read_sse(response)).ended
        assert reached == []
        refused = [
            (url + "?after=-1", {}, 400),
            (url, {"Last-Event-ID": "01"}, 400),
            (url + "?after=1&x=2", {}, 200),
            (url, {"Host": "evil.example"}, 400),
            ("/v1/runs/01NOSUCHRUN0000000000000000/events", {}, 404),
        ]
        for path, headers, status in refused:
            assert (await gateway.http.get(path, headers=headers)).status_code == status, path
        assert len(reached) == len(refused)
    finally:
        front.app = litestar
