"""The console with a tokens file (issue 13): a login form, the token in an HTTP-only same-site
cookie, a CSRF token on every form, read-only pages for a token without ``write``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import MAX_PAYLOAD, Readiness
from drive import FUNCTIONS

from trine_core import AUTH_TOKENS_FILE, MAX_PAYLOAD_BYTES, Settings
from trine_core.auth import hash_token, new_token
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.auth import GatewayAuth
from trine_gateway.settings import CORS_ORIGINS, HTTP_ADDR
from trine_gateway.ui.session import COOKIE
from trine_proto.trine.v1 import GetRunRequest, RunStatus, StartRunRequest

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
SCOPES = {"reader": ["read"], "writer": ["read", "write"], "worker": ["worker"]}


@dataclass
class Console:
    http: httpx.AsyncClient
    memory: MemoryEngine
    tokens: dict[str, str]
    path: Path
    auth: GatewayAuth

    async def sign_in(self, name: str, **headers: str) -> httpx.Response:
        data = {"token": self.tokens[name], "next": "/ui/runs"}
        return await self.http.post("/ui/login", data=data, headers=headers)

    async def csrf(self, page: str = "/ui/runs") -> str:
        response = await self.http.get(page)
        assert response.status_code == 200, response.text
        found = CSRF.search(response.text)
        assert found is not None, response.text
        return found[1]

    async def run(self) -> str:
        started = await self.memory.backend.start_run(StartRunRequest(function="order"))
        assert started.run is not None
        return started.run.id

    async def status(self, run_id: str) -> RunStatus:
        return (await self.memory.backend.get_run(GetRunRequest(run_id=run_id))).status


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    entries = [
        f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\nscopes = {SCOPES[name]}\n'
        for name, token in tokens.items()
    ]
    path.write_text("\n".join(entries).replace("'", '"'))


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    tokens = {name: new_token() for name in SCOPES}
    path = tmp_path / "tokens.toml"
    write_tokens(path, tokens)
    settings = Settings(
        {HTTP_ADDR: "127.0.0.1:0", MAX_PAYLOAD_BYTES: MAX_PAYLOAD, AUTH_TOKENS_FILE: str(path)}
    )
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS)
    lifecycle = Lifecycle()
    app = create_app(memory.backend, settings, Readiness(), lifecycle=lifecycle)
    auth = app.state.auth
    assert isinstance(auth, GatewayAuth)
    server = GatewayServer(app, "127.0.0.1:0", lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            yield Console(http, memory, tokens, path, auth)
    finally:
        await server.stop()


async def test_without_a_session_the_console_asks_for_a_token(console: Console) -> None:
    for page in ("/ui/runs", "/ui/runs?status=failed", "/ui/functions", "/ui/start"):
        response = await console.http.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F"), page
    login = await console.http.get("/ui/login", params={"next": "/ui/functions"})
    assert login.status_code == 200
    assert 'id="login-form"' in login.text
    assert 'type="password"' in login.text
    assert 'value="/ui/functions"' in login.text
    assert 'id="signout-form"' not in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    # nor may a post do anything
    run_id = await console.run()
    cancel = await console.http.post(f"/ui/runs/{run_id}/cancel", data={"reason": "x"})
    assert cancel.status_code == 401
    assert await console.status(run_id) == RunStatus.PENDING


async def test_a_wrong_token_or_one_that_may_not_read_is_refused(console: Console) -> None:
    wrong = await console.http.post("/ui/login", data={"token": "trine_nope"})
    assert wrong.status_code == 401
    assert "not a valid API token" in wrong.text
    assert "set-cookie" not in wrong.headers
    worker = await console.sign_in("worker")
    assert worker.status_code == 403
    assert "scope &#39;read&#39;" in worker.text
    assert "set-cookie" not in worker.headers
    huge = await console.http.post("/ui/login", data={"token": "x" * 10_000})
    assert huge.status_code == 401


async def test_the_cookie_is_http_only_same_site_and_for_the_console(console: Console) -> None:
    response = await console.sign_in("writer")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/runs"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={console.tokens['writer']};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    behind_tls = await console.sign_in("writer", **{"x-forwarded-proto": "https"})
    assert "secure" in behind_tls.headers["set-cookie"].lower().split("; ")


async def test_next_never_leaves_the_console(console: Console) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/v1/runs"):
        data = {"token": console.tokens["reader"], "next": target}
        response = await console.http.post("/ui/login", data=data)
        assert response.headers["location"] == "/ui/runs", target


async def test_a_write_token_acts_with_the_forms_csrf_token(console: Console) -> None:
    await console.sign_in("writer")
    run_id = await console.run()
    page = await console.http.get(f"/ui/runs/{run_id}")
    assert 'id="cancel-form"' in page.text
    assert "writer" in page.text
    csrf = await console.csrf(f"/ui/runs/{run_id}")

    missing = await console.http.post(f"/ui/runs/{run_id}/cancel", data={"reason": "x"})
    forged = await console.http.post(
        f"/ui/runs/{run_id}/cancel", data={"reason": "x", "csrf": "0" * 64}
    )
    assert [missing.status_code, forged.status_code] == [403, 403]
    assert "CSRF" in missing.text
    assert await console.status(run_id) == RunStatus.PENDING

    done = await console.http.post(f"/ui/runs/{run_id}/cancel", data={"reason": "x", "csrf": csrf})
    assert done.status_code == 303, done.text
    assert await console.status(run_id) == RunStatus.CANCELLED
    started = await console.http.post(
        "/ui/runs", data={"function": "order", "input": "{}", "csrf": csrf}
    )
    assert started.status_code == 303, started.text


async def test_a_read_token_sees_pages_but_may_not_act(console: Console) -> None:
    await console.sign_in("reader")
    run_id = await console.run()
    page = await console.http.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert 'id="cancel-form"' not in page.text
    assert 'id="read-only"' in page.text
    start = await console.http.get("/ui/start")
    assert 'id="start-form"' not in start.text
    for path in ("/ui/functions", "/ui/workers", "/ui/builds", f"/ui/runs/{run_id}/live"):
        assert (await console.http.get(path)).status_code == 200, path
    csrf = await console.csrf()  # the sign-out form's: a valid session's token
    refused = await console.http.post(f"/ui/runs/{run_id}/cancel", data={"csrf": csrf})
    assert refused.status_code == 403
    assert "lacks scope &#39;write&#39;" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert await console.status(run_id) == RunStatus.PENDING


async def test_signing_out_clears_the_cookie(console: Console) -> None:
    await console.sign_in("reader")
    csrf = await console.csrf()
    without = await console.http.post("/ui/logout")
    assert without.status_code == 403
    response = await console.http.post("/ui/logout", data={"csrf": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    assert response.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert (await console.http.get("/ui/runs")).status_code == 303


async def test_a_revoked_token_signs_its_sessions_out(console: Console) -> None:
    await console.sign_in("writer")
    assert (await console.http.get("/ui/runs")).status_code == 200
    write_tokens(console.path, {"reader": console.tokens["reader"]})
    assert console.auth.book.reload() is None  # what SIGHUP does
    assert (await console.http.get("/ui/runs")).status_code == 303


async def test_the_run_page_follows_events_under_the_cookie(console: Console) -> None:
    run_id = await console.run()
    await console.sign_in("reader")
    page = await console.http.get(f"/ui/runs/{run_id}")
    assert f'data-events="/ui/runs/{run_id}/events"' in page.text
    async with console.http.stream("GET", f"/ui/runs/{run_id}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                assert line == "event: run.started"
                break
    console.http.cookies.clear()
    anonymous = await console.http.get(f"/ui/runs/{run_id}/events")
    assert anonymous.status_code == 303


async def test_the_api_still_needs_a_bearer_token(console: Console) -> None:
    """The cookie is the console's only: an API call made with it is not signed in."""
    cookie = f"{COOKIE}={console.tokens['writer']}"
    response = await console.http.get("/v1/runs", headers={"cookie": cookie})
    assert response.status_code == 401


async def test_a_cors_page_can_read_the_token_checks_refusal(tmp_path: Path) -> None:
    """A page of a ``cors_origins`` origin sees the 401 (and its WWW-Authenticate) it must act
    on, not a CORS failure: the token check answers inside the CORS headers."""
    path = tmp_path / "tokens.toml"
    write_tokens(path, {"reader": new_token()})
    page = "https://app.example.com"
    settings = Settings(
        {AUTH_TOKENS_FILE: str(path), CORS_ORIGINS: (page,), MAX_PAYLOAD_BYTES: MAX_PAYLOAD}
    )
    memory = MemoryEngine(MAX_PAYLOAD, functions=FUNCTIONS)
    lifecycle = Lifecycle()
    app = create_app(memory.backend, settings, Readiness(), lifecycle=lifecycle)
    server = GatewayServer(app, "127.0.0.1:0", lifecycle)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            answer = await http.get("/v1/runs", headers={"origin": page})
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthenticated"
            assert answer.headers["access-control-allow-origin"] == page
            assert answer.headers["www-authenticate"].startswith("Bearer")
            preflight = await http.options(
                "/v1/runs",
                headers={"origin": page, "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 204  # no token on a preflight, and none needed
    finally:
        await server.stop()
