"""The gateway's connection limits: head size, read deadline, idle keep-alive, connection cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from trine_core import ConfigError, Settings
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.connections import HttpLimits
from trine_gateway.settings import MAX_CONNECTIONS, READ_TIMEOUT_S

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def serving(limits: HttpLimits) -> AsyncIterator[GatewayServer]:
    app = create_app(MemoryEngine().backend, Settings(), lambda: True)
    server = GatewayServer(app, "127.0.0.1:0", Lifecycle(), limits=limits)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(server: GatewayServer) -> Conn:
    return await asyncio.open_connection(server.host, server.port)


async def answer(
    reader: asyncio.StreamReader, within: float = 5.0
) -> tuple[int, dict[str, Any], bool]:
    """The status and JSON body the server sent, and whether it then closed the connection."""
    raw = await asyncio.wait_for(reader.read(), within)  # read() returns at EOF
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), reader.at_eof()


async def test_a_head_over_the_cap_gets_431_and_is_closed() -> None:
    async with serving(HttpLimits(max_header_bytes=4096)) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8192)
        status, body, closed = await answer(reader)
        writer.close()
        assert (status, body["error"]["code"], closed) == (431, "header_too_large", True)
        assert "gateway.max_header_bytes" in body["error"]["message"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/healthz")).status_code == 200  # still serving


async def test_a_small_head_with_a_large_body_is_no_overflow() -> None:
    """The cap counts the head only, even when one read brings the head and much of the body."""
    async with (
        serving(HttpLimits(max_header_bytes=1024)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post("/v1/runs", content=b"[" + b"1," * 100_000 + b"1]")
    assert response.status_code != 431
    assert response.json()["error"]["code"] != "header_too_large"


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half"])
async def test_a_silent_or_half_sent_request_gets_408_after_the_read_timeout(sent: bytes) -> None:
    async with serving(HttpLimits(read_timeout_s=0.3)) as server:
        reader, writer = await connect(server)
        writer.write(sent)
        began = time.monotonic()
        status, body, closed = await answer(reader)
        took = time.monotonic() - began
        writer.close()
    assert (status, body["error"]["code"], closed) == (408, "request_timeout", True)
    assert 0.25 < took < 3


async def test_a_body_that_never_ends_is_closed_at_the_read_timeout() -> None:
    async with serving(HttpLimits(read_timeout_s=0.3)) as server:
        reader, writer = await connect(server)
        writer.write(
            b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n{"
        )
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert reader.at_eof()
    assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]


async def test_a_kept_alive_connection_is_closed_when_idle() -> None:
    async with serving(HttpLimits(idle_timeout_s=0.3, read_timeout_s=30)) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        await asyncio.wait_for(reader.read(), 5)  # the body, then EOF at the idle timeout
        took = time.monotonic() - began
        writer.close()
    assert reader.at_eof()
    assert 0.2 < took < 3


async def test_beyond_the_connection_cap_a_connection_gets_503() -> None:
    async with serving(HttpLimits(max_connections=2)) as server:
        held = [await connect(server) for _ in range(2)]
        await asyncio.sleep(0.05)  # let the server accept both (no event tells a test client)
        reader, writer = await connect(server)
        status, body, closed = await answer(reader)
        writer.close()
        assert (status, body["error"]["code"], closed) == (503, "too_many_connections", True)
        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()
        for _ in range(50):  # the server sees them close; then one fits again
            reader, writer = await connect(server)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if raw.startswith(b"HTTP/1.1 200"):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("no connection served after the others closed")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.max_connections: must be positive"):
        HttpLimits.from_settings(Settings({MAX_CONNECTIONS: 0}))
    with pytest.raises(ConfigError, match=r"gateway\.read_timeout_s"):
        HttpLimits.from_settings(Settings({READ_TIMEOUT_S: -1.0}))
    assert HttpLimits.from_settings(Settings()) == HttpLimits()
