"""Bearer tokens on the gateway: the rule table, 401/403 as JSON errors, open routes, mounted
apps, the console's cookie for reads, SIGHUP re-reading the file, and a bad file at boot."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import MAX_PAYLOAD
from drive import FUNCTIONS, Clock

from trine_core import (
    AUTH_TOKENS_FILE,
    MAX_PAYLOAD_BYTES,
    ConfigError,
    Settings,
    TokenBook,
    hash_token,
    install_sighup_reload,
    new_token,
)
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.auth import CONSOLE, OPEN, GatewayAuth, bearer, scope_needed
from trine_gateway.plugin import HTTP_ADDR

RUN = "/v1/runs/01NOSUCHRUN0000000000000000"
TOKENS = {name: new_token() for name in ("reader", "writer", "admin", "worker")}


def tokens_file(path: Path, names: tuple[str, ...] = tuple(TOKENS)) -> Path:
    scopes = {"reader": "read", "writer": "write", "admin": "admin", "worker": "worker"}
    path.write_text(
        "".join(
            f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(TOKENS[name])}"\n'
            f'scopes = ["{scopes[name]}"]\n'
            for name in names
        )
    )
    return path


def bearer_of(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[name]}"}


async def metrics_app(scope: Any, receive: Any, send: Any) -> None:
    """A stand-in for an observer's mounted app (trine-metrics' /metrics)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"metrics"})


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path, GatewayAuth]]:
    path = tokens_file(tmp_path / "tokens.toml")
    settings = Settings(
        {HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: MAX_PAYLOAD, AUTH_TOKENS_FILE: str(path)}
    )
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS, clock=Clock())
    lifecycle = Lifecycle()
    app = create_app(
        memory.backend,
        settings,
        lambda: True,
        lifecycle=lifecycle,
        mounts={"/metrics": metrics_app},
    )
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield http, path, app.state.auth
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/healthz", OPEN),
        ("HEAD", "/healthz", OPEN),
        ("POST", "/healthz", "admin"),
        ("GET", "/ui/runs", CONSOLE),
        ("POST", "/ui", CONSOLE),
        ("GET", "/v1/runs", "read"),
        ("GET", f"{RUN}/events", "read"),
        ("GET", "/schema/openapi.json", "read"),
        ("GET", "/metrics", "read"),
        ("POST", "/v1/runs", "write"),
        ("POST", f"{RUN}/signals/approve", "write"),
        ("POST", f"{RUN}/cancel", "write"),
        ("POST", f"{RUN}/retry", "write"),
        ("POST", f"{RUN}/move", "admin"),
        ("DELETE", RUN, "admin"),  # a route without a rule is closed
        ("POST", "/v1/runsx", "admin"),
    ],
)
def test_rule_table(method: str, path: str, scope: str) -> None:
    assert scope_needed(method, path) == scope


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None
    assert bearer(None) is None


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


async def test_no_wrong_or_short_token(served: tuple[httpx.AsyncClient, Path, Any]) -> None:
    http, _, _ = served
    response = await http.get("/v1/runs")
    _error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="trine"'
    bad = {"authorization": f"Bearer {new_token()}"}
    _error(await http.get("/v1/runs", headers=bad), 401, "unauthenticated")
    _error(
        await http.get("/v1/runs", headers={"authorization": "Basic eDp5"}), 401, "unauthenticated"
    )
    response = await http.post("/v1/runs", json={"function": "order"}, headers=bearer_of("reader"))
    assert "'write'" in _error(response, 403, "permission_denied")
    assert "www-authenticate" not in response.headers
    response = await http.post(f"{RUN}/move", json={"build": "b"}, headers=bearer_of("writer"))
    assert "'admin'" in _error(response, 403, "permission_denied")
    # a worker token is for the coordinator, not the API
    _error(await http.get("/v1/runs", headers=bearer_of("worker")), 403, "permission_denied")


async def test_the_right_scope_passes(served: tuple[httpx.AsyncClient, Path, Any]) -> None:
    http, _, _ = served
    assert (await http.get("/v1/runs", headers=bearer_of("reader"))).status_code == 200
    started = await http.post("/v1/runs", json={"function": "order"}, headers=bearer_of("writer"))
    assert started.status_code == 201, started.text
    # admin implies read and write
    run = started.json()["id"]
    assert (await http.get(f"/v1/runs/{run}", headers=bearer_of("admin"))).status_code == 200
    cancel = await http.post(f"/v1/runs/{run}/cancel", json={}, headers=bearer_of("admin"))
    assert cancel.status_code not in (401, 403), cancel.text


async def test_open_and_mounted_routes(served: tuple[httpx.AsyncClient, Path, Any]) -> None:
    http, _, _ = served
    assert (await http.get("/healthz")).status_code == 200
    _error(await http.get("/metrics"), 401, "unauthenticated")
    _error(await http.get("/schema/openapi.json"), 401, "unauthenticated")
    metrics = await http.get("/metrics", headers=bearer_of("reader"))
    assert metrics.text == "metrics"
    schema = (await http.get("/schema/openapi.json", headers=bearer_of("reader"))).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]


async def test_a_cookie_is_no_token(served: tuple[httpx.AsyncClient, Path, Any]) -> None:
    """Only the console (under /ui, with its CSRF protection) reads a cookie."""
    http, _, _ = served
    cookie = {"cookie": f"trine_session={TOKENS['admin']}"}
    _error(await http.get("/v1/runs", headers=cookie), 401, "unauthenticated")


class Sentinel:
    """A logger for a second book installed after the gateway's: the shared SIGHUP handler
    reloads books in the order they were installed, so when this one logs, the gateway's book
    has been re-read."""

    def __init__(self) -> None:
        self.logged = asyncio.Event()

    def info(self, event: str, **fields: Any) -> None:
        self.logged.set()

    error = info


async def test_sighup_rereads_the_file(
    served: tuple[httpx.AsyncClient, Path, GatewayAuth], tmp_path: Path
) -> None:
    http, path, auth = served
    sentinel = Sentinel()
    remove = install_sighup_reload(TokenBook.load(tokens_file(tmp_path / "other.toml")), sentinel)
    try:
        tokens_file(path, ("writer",))  # the reader is revoked
        await _hup(sentinel)
        _error(await http.get("/v1/runs", headers=bearer_of("reader")), 401, "unauthenticated")
        _error(await http.get("/v1/runs", headers=bearer_of("writer")), 403, "permission_denied")
        path.write_text("[[tokens]\n")  # a bad edit keeps what is in force
        await _hup(sentinel)
        assert [token.name for token in auth.book.tokens] == ["writer"]
        _error(await http.get("/v1/runs", headers=bearer_of("writer")), 403, "permission_denied")
    finally:
        remove()


async def _hup(sentinel: Sentinel) -> None:
    sentinel.logged.clear()
    os.kill(os.getpid(), signal.SIGHUP)
    async with asyncio.timeout(5):
        await sentinel.logged.wait()


def test_a_bad_tokens_file_stops_the_boot(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[tokens]]\nname = "x"\nsha256 = "00"\nscopes = ["read"]\n')
    settings = Settings({AUTH_TOKENS_FILE: str(path), MAX_PAYLOAD_BYTES: MAX_PAYLOAD})
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS, clock=Clock())
    with pytest.raises(ConfigError, match=f"tokens file {path}: tokens\\[0\\] \\('x'\\)"):
        create_app(memory.backend, settings, lambda: True)
