"""``Client.events`` against a real HTTP server on a loopback port that breaks its streams on
purpose: it resets a connection mid-stream, answers 503, sends the stream's error event, ends a
stream early, resends and skips events. The client resumes with ``Last-Event-ID`` each time and
yields every event once, in order, until the final one."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

import trine
from trine import _events

FINAL = "run.completed"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def frame(seq: int, type_: str = "step.completed") -> bytes:
    body = {
        "seq": seq,
        "type": type_,
        "name": "wf" if type_.startswith("run.") else f"s{seq}",
        "data": {"n": seq},
        "at": f"2025-01-01T00:00:{seq:02d}.500Z",
    }
    return f"id: {seq}\nevent: {type_}\ndata: {json.dumps(body)}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def events(*seqs: int, then: str = "end", final: int | None = None) -> Answer:
    """200 and these events (``final``: the seq that is ``run.completed``), then: ``end`` the
    body, ``drop`` the connection (a reset, mid-body), or ``error:<code>`` (the stream's error
    event, then the end)."""

    async def answer(_request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        writer.write(_chunk(b": keep-alive\n\n"))
        for seq in seqs:
            writer.write(_chunk(frame(seq, FINAL if seq == final else "step.completed")))
        await writer.drain()
        if then == "drop":
            writer.transport.abort()
            return
        if then.startswith("error:"):
            error = {"error": {"code": then.removeprefix("error:"), "message": "it broke"}}
            writer.write(_chunk(f"event: stream.error\ndata: {json.dumps(error)}\n\n".encode()))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return answer


def status(code: int, error_code: str) -> Answer:
    async def answer(_request: Request, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"error": {"code": error_code, "message": "no"}}).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (code, len(body), body)
        )
        await writer.drain()

    return answer


@dataclass
class ScriptedGateway:
    """Answers the n-th ``GET /v1/runs/r1/events`` with ``script[n]`` (the last one again once
    the script runs out), and ``GET /v1/runs/r1`` with a run of status ``run_status``."""

    script: list[Answer] = field(default_factory=list)
    run_status: str = "running"
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def resumed_from(self) -> list[str | None]:
        """The ``Last-Event-ID`` of each events request."""
        return [r.headers.get("last-event-id") for r in self.requests if r.path.endswith("/events")]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode().split("\r\n")
            method, path, _ = line.split(" ")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)
            }
            request = Request(method, path, headers)
            self.requests.append(request)
            if path.endswith("/events"):
                served = sum(1 for r in self.requests if r.path.endswith("/events")) - 1
                await self.script[min(served, len(self.script) - 1)](request, writer)
            else:
                body = json.dumps({"id": "r1", "status": self.run_status}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_events, "INITIAL_BACKOFF_S", 0.01)
    monkeypatch.setattr(_events, "MAX_BACKOFF_S", 0.05)


@pytest.fixture
async def gateway() -> AsyncIterator[ScriptedGateway]:
    fake = ScriptedGateway()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake


@pytest.fixture
async def client(gateway: ScriptedGateway) -> AsyncIterator[trine.Client]:
    async with trine.Client(f"http://127.0.0.1:{gateway.port}", timeout=5) as c:
        yield c


async def collect(stream: AsyncIterator[trine.Event]) -> list[trine.Event]:
    async with asyncio.timeout(10):
        return [event async for event in stream]


async def test_events_are_objects_and_the_stream_ends_after_the_final_one(client, gateway) -> None:
    gateway.script = [events(1, 2, 3, final=3)]
    seen = await collect(client.events("r1"))
    assert [(e.id, e.type, e.name, e.data) for e in seen] == [
        (1, "step.completed", "s1", {"n": 1}),
        (2, "step.completed", "s2", {"n": 2}),
        (3, "run.completed", "wf", {"n": 3}),
    ]
    assert seen[0].at == datetime(2025, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)
    assert seen[0].at.tzinfo is UTC
    assert [e.final for e in seen] == [False, False, True]
    with pytest.raises(AttributeError):
        seen[0].id = 7  # type: ignore[misc]  # frozen
    assert gateway.resumed_from == [None]


async def test_a_reset_a_503_and_the_streams_error_event_are_resumed_without_gap_or_duplicate(
    client, gateway
) -> None:
    gateway.script = [
        events(1, 2, then="drop"),  # the connection resets mid-stream
        status(503, "unavailable"),  # the runtime is restarting
        events(2, 3, then="error:unavailable"),  # 2 again: a duplicate, skipped
        events(4, 5, final=5),
    ]
    seen = await collect(client.events("r1"))
    assert [e.id for e in seen] == [1, 2, 3, 4, 5]
    assert seen[-1].type == FINAL
    assert gateway.resumed_from == [None, "2", "2", "3"]


async def test_a_stream_that_ends_before_the_final_event_is_resumed(client, gateway) -> None:
    gateway.script = [events(1, 2), events(3, final=3)]  # the first ends early (a shutdown)
    assert [e.id for e in await collect(client.events("r1"))] == [1, 2, 3]
    assert gateway.resumed_from == [None, "2"]


async def test_a_skipped_event_is_asked_for_again(client, gateway) -> None:
    gateway.script = [events(1, 3, final=3), events(2, 3, final=3)]
    assert [e.id for e in await collect(client.events("r1"))] == [1, 2, 3]
    assert gateway.resumed_from == [None, "1"]


async def test_starting_after_the_final_event_ends_at_once(client, gateway) -> None:
    gateway.script = [events()]  # the gateway has nothing after it, and ends the stream
    gateway.run_status = "completed"
    assert await collect(client.events("r1", last_event_id=5)) == []
    assert gateway.resumed_from == ["5"]
    assert [r.path for r in gateway.requests] == ["/v1/runs/r1/events", "/v1/runs/r1"]


async def test_an_unknown_run_raises_at_once(client, gateway) -> None:
    gateway.script = [status(404, "run_not_found")]
    with pytest.raises(trine.ClientError) as info:
        await collect(client.events("r1"))
    assert (info.value.status, info.value.code) == (404, "run_not_found")
    assert len(gateway.requests) == 1


async def test_a_stream_error_retrying_cannot_mend_is_raised(client, gateway) -> None:
    gateway.script = [events(1, then="error:invalid_argument")]
    seen: list[int] = []

    async def follow() -> None:
        async for event in client.events("r1"):
            seen.append(event.id)

    with pytest.raises(trine.ClientError) as info:
        await follow()
    assert info.value.code == "invalid_argument"
    assert seen == [1]
    assert len(gateway.requests) == 1


async def test_an_outage_longer_than_the_reconnect_timeout_raises_the_last_error(
    client, gateway
) -> None:
    gateway.script = [status(503, "unavailable")]  # for good
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(trine.ClientError) as info:
        await collect(client.events("r1", reconnect_timeout=0.3))
    assert (info.value.status, info.value.code) == (503, "unavailable")
    assert loop.time() - started >= 0.3
    assert len(gateway.resumed_from) > 2  # it did try again, backing off


async def test_a_refused_connection_is_retried_until_the_reconnect_timeout() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with trine.Client(f"http://127.0.0.1:{port}", timeout=1) as client:
        with pytest.raises(httpx.ConnectError):
            await collect(client.events("r1", reconnect_timeout=0.2))


async def test_leaving_the_loop_early_closes_the_stream(client, gateway) -> None:
    gateway.script = [events(1, 2, 3, final=3)]
    stream = client.events("r1")
    async for event in stream:
        assert event.id == 1
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert gateway.resumed_from == [None]
