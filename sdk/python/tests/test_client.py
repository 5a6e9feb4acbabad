"""``trine.Client`` against a fake gateway (an ``httpx.MockTransport`` speaking the HTTP API)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

import trine


def run_json(run_id: str, status: str, result: object = None, error: dict | None = None) -> dict:
    return {
        "id": run_id,
        "function": "order",
        "status": status,
        "input": {"order_id": "o-1"},
        "result": result,
        "error": error,
        "attempt": 1,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
    }


class FakeGateway:
    """Answers like the gateway: runs pending, then completed on the second long poll."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.polls = 0
        self.signals: list[object] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/v1/runs":
            body = json.loads(request.content)
            if body["function"] == "nope":
                return httpx.Response(
                    404,
                    json={
                        "error": {
                            "code": "unknown_function",
                            "message": "no function 'nope'",
                            "details": {"known": ["order"]},
                        }
                    },
                )
            if body["function"] == "fails":
                error = {"type": "ValueError", "message": "bad", "traceback": "..."}
                return httpx.Response(200, json=run_json("r-f", "failed", error=error))
            status = 201 if "idempotency-key" not in request.headers else 200
            return httpx.Response(status, json=run_json("r1", "pending"))
        if request.method == "GET" and path == "/v1/runs/r1":
            if "wait" in request.url.params:
                self.polls += 1
                if self.polls >= 2:
                    return httpx.Response(200, json=run_json("r1", "completed", {"ok": True}))
            return httpx.Response(200, json=run_json("r1", "running"))
        if request.method == "GET" and path == "/v1/runs/missing":
            return httpx.Response(404, json={"error": {"code": "run_not_found", "message": "?"}})
        if request.method == "POST" and path == "/v1/runs/r1/cancel":
            return httpx.Response(200, json=run_json("r1", "cancelled"))
        if request.method == "POST" and path == "/v1/runs/r2/cancel":
            # a run that took steps: the workflow cleans up first
            if "wait" in request.url.params:
                return httpx.Response(200, json=run_json("r2", "cancelled"))
            run = run_json("r2", "running")
            run["cancel_requested"] = True
            run["cancel_deadline"] = "2025-01-01T00:00:30.000Z"
            return httpx.Response(202, json=run)
        if request.method == "POST" and path == "/v1/runs/done/cancel":
            return httpx.Response(
                409, json={"error": {"code": "run_finished", "message": "run done already"}}
            )
        if request.method == "POST" and path.startswith("/v1/runs/r1/signals/"):
            name = path.removeprefix("/v1/runs/r1/signals/")
            if name != "approved":
                return httpx.Response(
                    400, json={"error": {"code": "invalid_argument", "message": "bad name"}}
                )
            self.signals.append(json.loads(request.content))
            return httpx.Response(
                202,
                json={
                    "run_id": "r1",
                    "signal": name,
                    "delivered": True,
                    "run": run_json("r1", "pending"),
                },
            )
        if request.method == "POST" and path == "/v1/runs/r-f/retry":
            run = run_json("r-f", "pending")
            run["retries"] = 1
            return httpx.Response(200, json=run)
        if request.method == "POST" and path == "/v1/runs/r1/retry":
            message = "run r1 is running: only a failed or blocked run can be retried"
            return httpx.Response(
                409, json={"error": {"code": "run_not_retryable", "message": message}}
            )
        if request.method == "POST" and path == "/v1/runs/r1/move":
            run = run_json("r1", "pending")
            run["build_id"] = json.loads(request.content)["build_id"]
            return httpx.Response(200, json=run)
        if request.method == "GET" and path == "/v1/runs/r1/history":
            history = {"format": "trine.history/1", "run": run_json("r1", "completed")}
            return httpx.Response(200, json={**history, "journal": []})
        if request.method == "GET" and path == "/v1/builds":
            return httpx.Response(200, json={"builds": [{"build_id": "b1", "open_runs": 2}]})
        if request.method == "GET" and path == "/v1/runs":
            return httpx.Response(200, json={"runs": [], "next_page_token": None})
        if request.method == "GET" and path == "/v1/runs/r1/events":
            after = int(request.headers.get("last-event-id", "0"))
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_sse(after),
            )
        return httpx.Response(500, text="not json")


class _sse(httpx.AsyncByteStream):
    EVENTS = [
        (1, "run.started", "order", {"function": "order"}),
        (2, "custom", "progress", {"pct": 50}),
        (3, "run.completed", "order", {"ok": True}),
    ]

    def __init__(self, after: int) -> None:
        self.after = after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b": keep-alive\n\n"
        for seq, kind, name, value in self.EVENTS:
            if seq > self.after:
                at = f"2025-01-01T00:00:0{seq}.123Z"
                event = {"seq": seq, "type": kind, "name": name, "data": value, "at": at}
                data = json.dumps(event)
                # Split across chunks on purpose: lines must be reassembled.
                text = f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()
                yield text[:7]
                yield text[7:]


@pytest.fixture
async def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def client(gateway: FakeGateway) -> AsyncIterator[trine.Client]:
    async with trine.Client("http://gw", transport=httpx.MockTransport(gateway)) as c:
        yield c


async def test_start_sends_function_input_and_idempotency_key(client, gateway) -> None:
    run = await client.start("order", {"order_id": "o-1"}, idempotency_key="k-1")
    assert run["id"] == "r1"
    assert run["status"] == "pending"
    request = gateway.requests[-1]
    assert json.loads(request.content) == {"function": "order", "input": {"order_id": "o-1"}}
    assert request.headers["idempotency-key"] == "k-1"


async def test_result_long_polls_until_final(client, gateway) -> None:
    assert await client.result("r1", timeout=30) == {"ok": True}
    waits = [float(r.url.params["wait"]) for r in gateway.requests]
    assert len(waits) == 2
    assert all(0 < w <= 60 for w in waits)


async def test_run_starts_with_wait_then_polls(client, gateway) -> None:
    assert await client.run("order", {"order_id": "o-1"}) == {"ok": True}
    assert "wait" in gateway.requests[0].url.params


async def test_failed_run_raises_run_failed_error(client) -> None:
    with pytest.raises(trine.RunFailedError) as info:
        await client.run("fails", {})
    assert (info.value.status, info.value.type, info.value.message) == (
        "failed",
        "ValueError",
        "bad",
    )
    assert info.value.run_id == "r-f"


async def test_http_errors_become_client_errors(client) -> None:
    with pytest.raises(trine.ClientError) as info:
        await client.start("nope")
    assert (info.value.status, info.value.code) == (404, "unknown_function")
    assert info.value.details == {"known": ["order"]}
    with pytest.raises(trine.ClientError) as info:
        await client.get("missing")
    assert info.value.code == "run_not_found"
    with pytest.raises(trine.ClientError) as info:
        await client.get("other")
    assert (info.value.status, info.value.code) == (500, "http_500")


async def test_cancel(client, gateway) -> None:
    assert (await client.cancel("r1", reason="stop"))["status"] == "cancelled"
    assert json.loads(gateway.requests[-1].content) == {"reason": "stop"}
    assert "wait" not in gateway.requests[-1].url.params


async def test_cancel_that_is_requested_answers_the_run_not_final_yet(client, gateway) -> None:
    run = await client.cancel("r2")
    assert (run["status"], run["cancel_requested"]) == ("running", True)
    assert run["cancel_deadline"] == "2025-01-01T00:00:30.000Z"
    assert gateway.requests[-1].content == b""
    waited = await client.cancel("r2", "stop", wait=5)
    assert waited["status"] == "cancelled"
    assert float(gateway.requests[-1].url.params["wait"]) == 5


async def test_cancel_of_a_finished_run_is_a_client_error(client) -> None:
    with pytest.raises(trine.ClientError) as info:
        await client.cancel("done")
    assert (info.value.status, info.value.code) == (409, "run_finished")


async def test_start_passes_the_runs_timeout(client, gateway) -> None:
    await client.start("order", {"order_id": "o-1"}, timeout=90.5)
    body = json.loads(gateway.requests[-1].content)
    assert body == {"function": "order", "input": {"order_id": "o-1"}, "timeout_s": 90.5}
    await client.start("order")
    assert "timeout_s" not in json.loads(gateway.requests[-1].content)


async def test_run_passes_the_runs_timeout_apart_from_its_wait(client, gateway) -> None:
    assert await client.run("order", {}, timeout=30, run_timeout=600) == {"ok": True}
    start = gateway.requests[0]
    assert json.loads(start.content)["timeout_s"] == 600
    assert float(start.url.params["wait"]) == 30
    first = len(gateway.requests)
    await client.run("order", {})
    assert "timeout_s" not in json.loads(gateway.requests[first].content)


@pytest.mark.parametrize("payload", [{"by": "ana", "ok": True}, [1, "ü"], "yes", 0, None])
async def test_signal_sends_its_payload_as_json(client, gateway, payload: object) -> None:
    answer = await client.signal("r1", "approved", payload)
    assert answer["delivered"] is True
    assert (answer["run_id"], answer["signal"]) == ("r1", "approved")
    assert answer["run"]["id"] == "r1"
    request = gateway.requests[-1]
    assert request.method == "POST"
    assert request.url.path == "/v1/runs/r1/signals/approved"
    assert request.headers["content-type"] == "application/json"
    assert gateway.signals == [payload]


async def test_signal_without_a_payload_sends_null(client, gateway) -> None:
    await client.signal("r1", "approved")
    assert gateway.requests[-1].content == b"null"


async def test_signal_name_is_quoted_and_errors_are_client_errors(client, gateway) -> None:
    with pytest.raises(trine.ClientError) as info:
        await client.signal("r1", "a/b c", 1)
    assert (info.value.status, info.value.code) == (400, "invalid_argument")
    assert gateway.requests[-1].url.raw_path == b"/v1/runs/r1/signals/a%2Fb%20c"
    with pytest.raises(TypeError, match=r"payload of signal 'approved' .*nan"):
        await client.signal("r1", "approved", float("nan"))


async def test_events_yield_event_objects_and_start_after_an_id(client, gateway) -> None:
    events = [e async for e in client.events("r1")]
    assert [(e.id, e.type, e.name, e.data) for e in events] == [
        (1, "run.started", "order", {"function": "order"}),
        (2, "custom", "progress", {"pct": 50}),
        (3, "run.completed", "order", {"ok": True}),
    ]
    assert all(isinstance(e, trine.Event) for e in events)
    assert events[1].at == datetime(2025, 1, 1, 0, 0, 2, 123_000, tzinfo=UTC)
    assert [e.final for e in events] == [False, False, True]
    rest = [e async for e in client.events("r1", last_event_id=events[0].id)]
    assert rest == events[1:]
    assert gateway.requests[-1].headers["last-event-id"] == "1"


async def test_base_url_defaults_to_trine_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRINE_URL", "http://example:1234")
    async with trine.Client() as c:
        assert c.base_url == "http://example:1234"
    monkeypatch.delenv("TRINE_URL")
    async with trine.Client() as c:
        assert c.base_url == "http://127.0.0.1:7480"


async def test_run_timeout_error_names_the_callers_timeout() -> None:
    # The start request's long poll takes the whole wait: the error must still say 0.3 seconds
    # (the caller's), not the sliver left for the follow-up poll.
    async def suspended(request: httpx.Request) -> httpx.Response:
        wait = request.url.params.get("wait")
        if wait is not None:
            await asyncio.sleep(float(wait))
        return httpx.Response(200, json=run_json("r-s", "suspended"))

    async with trine.Client("http://gw", transport=httpx.MockTransport(suspended)) as client:
        with pytest.raises(TimeoutError) as info:
            await client.run("order", {}, timeout=0.3)
    assert str(info.value) == "run r-s is still suspended after 0.3 seconds"


async def test_list_functions_and_workers_answer_the_documents() -> None:
    functions = {"functions": [{"name": "order", "retry": None}]}
    workers = {"workers": [{"worker_id": "w-1", "functions": ["order"], "free_slots": 3}]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/functions":
            return httpx.Response(200, json=functions)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})

    async with trine.Client("http://gw", transport=httpx.MockTransport(answer)) as c:
        assert await c.list_functions() == functions
        with pytest.raises(trine.ClientError) as info:
            await c.list_workers()
        assert (info.value.status, info.value.code) == (404, "not_found")

    async with trine.Client(
        "http://gw", transport=httpx.MockTransport(lambda _: httpx.Response(200, json=workers))
    ) as c:
        assert await c.list_workers() == workers


async def test_retry_move_history_and_builds(client, gateway) -> None:
    retried = await client.retry("r-f", reason="fixed")
    assert (retried["status"], retried["retries"]) == ("pending", 1)
    assert json.loads(gateway.requests[-1].content) == {"reason": "fixed"}
    with pytest.raises(trine.ClientError) as refused:
        await client.retry("r1")
    assert (refused.value.status, refused.value.code) == (409, "run_not_retryable")
    assert gateway.requests[-1].content == b""
    assert (await client.move("r1", "b2"))["build_id"] == "b2"
    assert json.loads(gateway.requests[-1].content) == {"build_id": "b2"}
    assert (await client.history("r1"))["format"] == "trine.history/1"
    assert (await client.list_builds())["builds"][0]["build_id"] == "b1"


async def test_list_runs_newest_first_only_when_asked(client, gateway) -> None:
    await client.list_runs(function="order")
    assert "newest_first" not in gateway.requests[-1].url.params
    await client.list_runs(function="order", newest_first=True)
    assert gateway.requests[-1].url.params["newest_first"] == "true"
