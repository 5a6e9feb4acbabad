"""``POST /v1/runs/{id}/signals/{name}``: delivery to a waiting run, kept signals, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MAX_PAYLOAD, Gateway, start
from drive import requests, wait_signal
from sse_client import SseReader, read_sse
from test_errors import JSON, RUN, error

from trine_core import KeptSignalsFull
from trine_gateway.app import BODY_SLACK_BYTES
from trine_proto.trine.v1 import SignalRunRequest


async def wait_for_signal(gateway: Gateway, run_id: str, name: str, index: int = 0) -> None:
    await gateway.drive.suspend_on(run_id, wait_signal(index, name))


def signals(gateway: Gateway) -> list[SignalRunRequest]:
    """Every signal the gateway sent the engine."""
    return requests(gateway.memory, "signal_run")


async def event_types(gateway: Gateway, run_id: str) -> list[str]:
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        return [e["event"] for e in (await read_sse(response)).events]


async def test_signal_to_a_waiting_run_is_delivered(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await wait_for_signal(gateway, run_id, "approved")
    suspended = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert suspended["status"] == "suspended"
    assert suspended["waiting"] == [
        {"kind": "signal", "index": 0, "name": "approved", "until": None, "child_run_id": None}
    ]

    response = await gateway.http.post(
        f"/v1/runs/{run_id}/signals/approved", json={"by": "ana", "amount": 19.99}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"run_id", "signal", "delivered", "run"}
    assert (body["run_id"], body["signal"], body["delivered"]) == (run_id, "approved", True)
    assert body["run"]["id"] == run_id
    assert body["run"]["waiting"] == []
    (sent,) = signals(gateway)
    assert (sent.run_id, sent.name) == (run_id, "approved")
    assert sent.payload == b'{"by":"ana","amount":19.99}'

    (entry,) = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert (entry["kind"], entry["name"], entry["pending"]) == ("signal", "approved", False)
    assert entry["output"] == {"by": "ana", "amount": 19.99}


async def test_signal_before_the_run_waits_is_kept(gateway: Gateway) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/signals/later", json=[1, 2])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["delivered"] is False
    assert body["run"]["status"] == "pending"
    assert body["run"]["kept_signals"] == [{"name": "later", "count": 1, "bytes": 5}]
    await gateway.http.post(f"/v1/runs/{run_id}/signals/later", json={"a": 1})
    await gateway.http.post(f"/v1/runs/{run_id}/signals/early", json=None)
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["kept_signals"] == [
        {"name": "early", "count": 1, "bytes": 4},
        {"name": "later", "count": 2, "bytes": 12},
    ]
    listed = (await gateway.http.get("/v1/runs")).json()["runs"]
    assert listed[0]["kept_signals"] == run["kept_signals"]
    await gateway.drive.report(run_id, wait_signal(0, "later"))  # takes the oldest
    taken = (await gateway.http.get(f"/v1/runs/{run_id}")).json()["kept_signals"]
    assert taken == [
        {"name": "early", "count": 1, "bytes": 4},
        {"name": "later", "count": 1, "bytes": 7},
    ]


async def test_a_run_that_keeps_all_it_may_refuses_with_kept_signals_full(
    gateway: Gateway,
) -> None:
    run_id = await start(gateway)
    gateway.memory.fail_with = KeptSignalsFull(
        f"run {run_id} does not wait for signal 'go' and it keeps 5 signals no wait took",
        run_id=run_id,
        limit="engine.max_kept_signals",
        limit_value=5,
        kept=5,
        kept_bytes=20,
    )
    problem = error(
        await gateway.http.post(f"/v1/runs/{run_id}/signals/go"), 409, "kept_signals_full"
    )
    assert problem["details"]["limit"] == "engine.max_kept_signals"
    assert (problem["details"]["kept"], problem["details"]["kept_bytes"]) == (5, 20)


async def test_signal_name_may_use_letters_digits_and_some_punctuation(gateway: Gateway) -> None:
    run_id = await start(gateway)
    for name in ("a", "Order.Approved:v2_final-1", "x" * 200):
        response = await gateway.http.post(f"/v1/runs/{run_id}/signals/{name}", json=None)
        assert response.status_code == 202, (name, response.text)
        assert response.json()["signal"] == name
    assert [s.name for s in signals(gateway)] == [
        "a",
        "Order.Approved:v2_final-1",
        "x" * 200,
    ]


@pytest.mark.parametrize(
    ("body", "headers", "sent"),
    [
        (b"", {}, b"null"),
        (b"", JSON, b"null"),
        (b"null", JSON, b"null"),
        (b'"yes"', JSON, b'"yes"'),
        (b"42", JSON, b"42"),
        (b'{"ok": true}', JSON, b'{"ok":true}'),
        (b"[1]", {"content-type": "application/json; charset=utf-8"}, b"[1]"),
        # any other type of body is refused (415, test_browser_checks.py): a web page could post it
    ],
)
async def test_signal_payload_is_any_json_document(
    gateway: Gateway, body: bytes, headers: dict[str, str], sent: bytes
) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(
        f"/v1/runs/{run_id}/signals/go", content=body, headers=headers
    )
    assert response.status_code == 202, response.text
    assert signals(gateway)[-1].payload == sent


async def test_signal_shows_on_the_event_stream(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await wait_for_signal(gateway, run_id, "go")
    await gateway.http.post(f"/v1/runs/{run_id}/signals/go", json={"n": 1})
    await gateway.drive.complete(run_id, None)
    async with gateway.http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        sse = await SseReader(response).read()
    assert [e["event"] for e in sse.events] == [
        "run.started",
        "signal.waiting",
        "signal.received",
        "run.completed",
    ]
    assert sse.events[2]["data"]["name"] == "go"
    assert sse.events[2]["data"]["data"] == {"delivered_to": 0, "payload": {"n": 1}}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("with space", "' '"),
        ("semi;colon", "';'"),
        ("ümlaut", "'ü'"),
        ("star*and+plus", "'*+'"),
        ("x" * 201, "not 201"),
    ],
)
async def test_bad_signal_name(gateway: Gateway, name: str, problem: str) -> None:
    run_id = await start(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/signals/{name}", json=1)
    err = error(response, 400, "invalid_argument")
    assert "signal name" in err["message"]
    assert problem in err["message"]
    assert signals(gateway) == []


async def test_empty_signal_name_has_no_route(gateway: Gateway) -> None:
    run_id = await start(gateway)
    error(await gateway.http.post(f"/v1/runs/{run_id}/signals/"), 404, "not_found")
    error(await gateway.http.post(f"/v1/runs/{run_id}/signals/a/b"), 404, "not_found")
    assert signals(gateway) == []


async def test_signal_with_malformed_json(gateway: Gateway) -> None:
    run_id = await start(gateway)
    for body in (b"{nope", b'{"a": 1', b"tru"):
        response = await gateway.http.post(
            f"/v1/runs/{run_id}/signals/go", content=body, headers=JSON
        )
        err = error(response, 400, "malformed_json")
        assert "not valid JSON" in err["message"]
    assert signals(gateway) == []


async def test_signal_to_an_unknown_run(gateway: Gateway) -> None:
    error(await gateway.http.post(f"{RUN}/signals/go", json=1), 404, "run_not_found")


async def test_signal_to_a_finished_run_is_a_conflict(gateway: Gateway) -> None:
    run_id = await start(gateway)
    await gateway.drive.complete(run_id, 1)
    err = error(await gateway.http.post(f"/v1/runs/{run_id}/signals/go"), 409, "run_finished")
    assert run_id in err["message"]
    assert await event_types(gateway, run_id) == ["run.started", "run.completed"]  # not taken


async def test_signal_payload_over_the_limit(gateway: Gateway) -> None:
    run_id = await start(gateway)
    # under the request limit: the backend judges the payload itself
    response = await gateway.http.post(f"/v1/runs/{run_id}/signals/go", json="x" * MAX_PAYLOAD)
    error(response, 413, "payload_too_large")
    # over the request limit: refused before the backend
    big: Any = "x" * (MAX_PAYLOAD + BODY_SLACK_BYTES)
    response = await gateway.http.post(f"/v1/runs/{run_id}/signals/go", json=big)
    problem = error(response, 413, "payload_too_large")
    assert problem["details"] == {"limit": MAX_PAYLOAD + BODY_SLACK_BYTES}
    assert len(signals(gateway)) == 1  # only the first reached the engine, which refused it
    await gateway.drive.complete(run_id, None)
    assert await event_types(gateway, run_id) == ["run.started", "run.completed"]  # not taken


async def test_wrong_method_on_the_signal_route(gateway: Gateway) -> None:
    error(await gateway.http.get(f"{RUN}/signals/go"), 405, "method_not_allowed")
