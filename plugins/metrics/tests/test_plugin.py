"""The ``metrics`` observer in a runtime: enabled when installed, its own server on
``[metrics] addr``, an app for the gateway's ``/metrics``, and off with ``plugins = none``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from trine_core import (
    PLUGINS,
    TARGET,
    ConfigError,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    hookimpl,
)
from trine_core.instruments import REGISTRY
from trine_core.testing import free_port, occupied_port
from trine_metrics.plugin import METRICS_ADDR, _samplers, trine_http_apps

PLUGIN_COUNTER = REGISTRY.counter("trine_plugin_test_total", "Counted by this test.")


class Idle:
    """A role that does nothing: the runtime needs one to boot."""

    name: ClassVar[str] = "idle"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        pass

    async def stop(self) -> None:
        pass

    def ready(self) -> bool:
        return True


class Roles:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role(Idle.name, Idle)


async def get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def request(path: str = "/metrics", method: str = "GET", close: bool = True) -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{connection}\r\n".encode()


@pytest.fixture
async def served() -> AsyncIterator[int]:
    port = free_port()
    runtime = Runtime(
        Settings({TARGET: "idle", METRICS_ADDR: f"127.0.0.1:{port}"}), extra_plugins=(Roles(),)
    )
    await runtime.start()
    try:
        yield port
    finally:
        await runtime.stop()


async def test_metrics_on_their_own_address(served: int) -> None:
    PLUGIN_COUNTER.inc()
    answer = await get(served, request())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert b"trine_plugin_test_total 1.0" in body
    assert b"process_cpu_seconds_total" in body


async def test_keep_alive_head_and_errors(served: int) -> None:
    raw = request(close=False) + request("/metrics", "HEAD", close=False) + request("/other")
    answers = (await get(served, raw)).split(b"HTTP/1.1 ")[1:]
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"200 OK", b"200 OK", b"404 Not Found"]
    assert b"trine_plugin_test_total" not in answers[1]  # HEAD: no body
    answer = await get(served, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405")


async def test_openmetrics_when_asked(served: int) -> None:
    raw = (
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n"
        b"Connection: close\r\n\r\n"
    )
    answer = await get(served, raw)
    assert b"application/openmetrics-text" in answer.partition(b"\r\n\r\n")[0]
    assert answer.rstrip().endswith(b"# EOF")


async def test_stopped_runtime_stops_serving() -> None:
    port = free_port()
    runtime = Runtime(
        Settings({TARGET: "idle", METRICS_ADDR: f"127.0.0.1:{port}"}), extra_plugins=(Roles(),)
    )
    await runtime.start()
    assert (await get(port, request())).startswith(b"HTTP/1.1 200")
    await runtime.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_port_in_use_is_a_boot_error() -> None:
    with occupied_port() as port:
        runtime = Runtime(
            Settings({TARGET: "idle", METRICS_ADDR: f"127.0.0.1:{port}"}), extra_plugins=(Roles(),)
        )
        with pytest.raises(ConfigError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            await runtime.start()


async def test_no_address_no_server_and_plugins_none_loads_nothing() -> None:
    runtime = Runtime(Settings({TARGET: "idle"}), extra_plugins=(Roles(),))
    await runtime.start()
    assert runtime.plugins is not None
    assert runtime.plugins.manager.get_plugin("trine.plugins:metrics") is not None
    await runtime.stop()
    port = free_port()
    off = Runtime(
        Settings({TARGET: "idle", PLUGINS: ("none",), METRICS_ADDR: f"127.0.0.1:{port}"}),
        extra_plugins=(Roles(),),
    )
    await off.start()
    assert off.plugins is not None
    assert off.plugins.manager.get_plugin("trine.plugins:metrics") is None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await off.stop()


async def test_the_gateway_app() -> None:
    """What ``trine_http_apps`` gives the gateway: plain ASGI serving the same text."""
    PLUGIN_COUNTER.inc()
    app = trine_http_apps(settings=Settings({}))["/metrics"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert b"trine_plugin_test_total" in sent[1]["body"]


async def test_the_runtime_samples_its_loop_while_it_runs() -> None:
    settings = Settings({TARGET: "idle"})
    runtime = Runtime(settings, extra_plugins=(Roles(),))
    await runtime.start()
    sampler = _samplers[id(settings)]
    assert sampler.running
    await runtime.stop()
    assert id(settings) not in _samplers
    await asyncio.sleep(0)
    assert not sampler.running
