"""``trine.Client``'s API token: ``token=`` or ``$TRINE_TOKEN``, sent as a Bearer header on every
request (event streams too), and a gateway's 401/403 as ``ClientError`` with the API's code."""

from __future__ import annotations

import httpx
import pytest

import trine


class Gateway:
    """A fake gateway that remembers each request's Authorization header and refuses the ones
    without ``trine_good``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        self.seen.append((request.url.path, auth))
        if auth is None:
            error = {"code": "unauthenticated", "message": "an API token is required"}
            return httpx.Response(401, json={"error": error})
        if auth != "Bearer trine_good":
            error = {"code": "permission_denied", "message": "lacks scope 'read'"}
            return httpx.Response(403, json={"error": error})
        if request.url.path.endswith("/events"):
            body = b'id: 1\nevent: run.completed\ndata: {"seq": 1, "type": "run.completed"}\n\n'
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"runs": [], "next_cursor": None})


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRINE_TOKEN", raising=False)


async def test_token_argument_on_every_request_and_stream() -> None:
    gateway = Gateway()
    transport = httpx.MockTransport(gateway)
    async with trine.Client("http://gw", transport=transport, token="trine_good") as client:
        await client.list_runs()
        async for _ in client.events("r1"):
            break
    assert [auth for _, auth in gateway.seen] == ["Bearer trine_good"] * 2
    assert gateway.seen[1][0] == "/v1/runs/r1/events"


async def test_trine_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRINE_TOKEN", "trine_good")
    gateway = Gateway()
    async with trine.Client("http://gw", transport=httpx.MockTransport(gateway)) as client:
        await client.list_runs()
    assert gateway.seen == [("/v1/runs", "Bearer trine_good")]


async def test_an_explicit_header_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRINE_TOKEN", "trine_good")
    gateway = Gateway()
    headers = {"Authorization": "Bearer trine_other"}
    async with trine.Client(
        "http://gw", transport=httpx.MockTransport(gateway), headers=headers
    ) as client:
        with pytest.raises(trine.ClientError) as denied:
            await client.list_runs()
    assert (denied.value.status, denied.value.code) == (403, "permission_denied")


async def test_no_token_is_unauthenticated() -> None:
    async with trine.Client("http://gw", transport=httpx.MockTransport(Gateway())) as client:
        with pytest.raises(trine.ClientError) as refused:
            await client.list_runs()
    assert (refused.value.status, refused.value.code) == (401, "unauthenticated")
