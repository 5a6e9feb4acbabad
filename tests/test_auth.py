"""API tokens end to end (issue 13), in both topologies: a runtime started with a tokens file
answers every route of its OpenAPI document 401 without a token, 401 with a wrong one, 403 with a
token lacking the scope, and serves it with the right one; ``/healthz`` stays open; editing the
file and sending SIGHUP to the gateway's process revokes a token without a restart, and a bad
edit keeps the tokens in force and logs one line."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import ORDER, Cluster, Proc, wait_run

from trine_core import hash_token, new_token

SCOPES = {"reader": "read", "writer": "write", "admin": "admin", "worker": "worker"}
TOKENS = {name: new_token() for name in SCOPES}
WRONG = new_token()
LACKING = {"read": "worker", "write": "reader", "admin": "writer"}
"""For each scope a route may need, a token that does not grant it (admin implies the others)."""


def write_tokens(path: Path, *names: str) -> Path:
    path.write_text(
        "".join(
            f'[[tokens]]\nname = "{name}"\nsha256 = "{hash_token(TOKENS[name])}"\n'
            f'scopes = ["{SCOPES[name]}"]\n\n'
            for name in names
        )
    )
    return path


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def scope_of(method: str, path: str) -> str:
    """What the issue says each route needs: reads ``read``; starting, signalling, cancelling
    and retrying a run ``write``; moving it (an operator's action) ``admin``."""
    if method in ("get", "head"):
        return "read"
    return "admin" if path.endswith("/move") else "write"


def call(http: httpx.Client, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    """One request; an event stream is opened and closed once its status is known."""
    if method == "get":
        with http.stream("GET", url, headers=headers) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return response
            response.read()
            return response
    body: dict[str, Any] = {"function": "order", "input": ORDER} if url == "/v1/runs" else {}
    return http.request(method.upper(), url, json=body, headers=headers)


def refused(response: httpx.Response, status: int, code: str, where: str) -> str:
    assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, where
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), where
    message: str = error["message"]
    return message


def gateway_proc(cluster: Cluster) -> Proc:
    return cluster.runtime_proc("all" if cluster.topology == "all" else "gateway")


def hup(proc: Proc, event: str) -> str:
    """SIGHUP ``proc`` and return the log line of ``event`` it writes after it."""
    after = len(proc.log.lines())
    proc.popen.send_signal(signal.SIGHUP)
    return proc.log.wait_for(lambda line: event in line, proc.popen, after=after)


@pytest.fixture
def secured(cluster: Cluster) -> tuple[Cluster, Path]:
    path = write_tokens(cluster.workdir / "tokens.toml", *SCOPES)
    cluster.start(TRINE_AUTH_TOKENS_FILE=str(path))
    cluster.start_worker(TRINE_TOKEN=TOKENS["worker"])
    return cluster, path


def test_every_route_needs_its_scope(secured: tuple[Cluster, Path]) -> None:
    cluster, _ = secured
    with cluster.client() as http:
        assert http.get("/healthz").status_code == 200  # open, for load balancers
        message = refused(http.get("/schema/openapi.json"), 401, "unauthenticated", "schema")
        assert "TRINE_TOKEN" in message
        schema = http.get("/schema/openapi.json", headers=bearer(TOKENS["reader"])).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

        writer = bearer(TOKENS["writer"])
        started = http.post("/v1/runs", json={"function": "order", "input": ORDER}, headers=writer)
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        http.headers.update(bearer(TOKENS["reader"]))
        assert wait_run(http, run_id)["status"] == "completed"
        del http.headers["authorization"]

        walked: list[tuple[str, str]] = []
        # reads first, the cancel last: a right-scope call may change the run
        routes = sorted(
            (
                (method, path)
                for path, item in schema["paths"].items()
                for method in item
                if method in ("get", "post", "put", "patch", "delete")
            ),
            key=lambda route: (route[0] != "get", route[1].endswith("/cancel")),
        )
        for method, path in routes:
            url = re.sub(r"\{run_id\}", run_id, path)
            url = re.sub(r"\{name\}", "approve", url)
            assert "{" not in url, f"a path parameter the test does not fill: {path}"
            where = f"{method.upper()} {path}"
            if path == "/healthz":
                assert call(http, method, url, {}).status_code == 200, where
                continue
            walked.append((method, path))
            scope = scope_of(method, path)
            refused(call(http, method, url, {}), 401, "unauthenticated", where)
            refused(call(http, method, url, bearer(WRONG)), 401, "unauthenticated", where)
            lacking = call(http, method, url, bearer(TOKENS[LACKING[scope]]))
            assert f"'{scope}'" in refused(lacking, 403, "permission_denied", where)
            name = next(n for n, s in SCOPES.items() if s == scope)
            allowed = call(http, method, url, bearer(TOKENS[name]))
            assert allowed.status_code not in (401, 403), f"{where}: {allowed.text}"
            assert allowed.status_code < 500, f"{where}: {allowed.text}"
            if scope != "admin":  # admin implies read and write
                by_admin = call(http, method, url, bearer(TOKENS["admin"]))
                assert by_admin.status_code not in (401, 403), f"{where}: {by_admin.text}"

        expected = {
            ("get", "/v1/runs"),
            ("get", "/v1/runs/{run_id}/events"),
            ("post", "/v1/runs"),
            ("post", "/v1/runs/{run_id}/cancel"),
            ("post", "/v1/runs/{run_id}/move"),
        }
        assert expected <= set(walked), walked

        # /metrics, mounted from trine-metrics outside the OpenAPI document, is a read too
        refused(http.get("/metrics"), 401, "unauthenticated", "/metrics")
        by_writer = http.get("/metrics", headers=bearer(TOKENS["writer"]))
        refused(by_writer, 403, "permission_denied", "/metrics")
        assert http.get("/metrics", headers=bearer(TOKENS["reader"])).status_code == 200


def test_sighup_revokes_without_a_restart(secured: tuple[Cluster, Path]) -> None:
    cluster, path = secured
    proc = gateway_proc(cluster)
    with cluster.client() as http:
        assert http.get("/v1/runs", headers=bearer(TOKENS["reader"])).status_code == 200

        write_tokens(path, "writer", "admin", "worker")  # the reader is revoked
        hup(proc, "tokens file reloaded")
        revoked = http.get("/v1/runs", headers=bearer(TOKENS["reader"]))
        refused(revoked, 401, "unauthenticated", "revoked reader")
        assert http.get("/v1/runs", headers=bearer(TOKENS["admin"])).status_code == 200

        path.write_text('[[tokens]]\nname = "admin"\nscopes = ["admin"]\n')  # a bad edit
        after = len(proc.log.lines())
        line = hup(proc, "tokens file not reloaded")
        assert "missing 'sha256'" in line
        assert str(path) in line
        assert sum("tokens file" in entry for entry in proc.log.lines()[after:]) == 1
        assert proc.alive
        # what was in force stays: the admin works, the reader is still revoked
        assert http.get("/v1/runs", headers=bearer(TOKENS["admin"])).status_code == 200
        refused(http.get("/v1/runs", headers=bearer(TOKENS["reader"])), 401, "unauthenticated", "")
    assert all(p.alive for p in cluster.runtime)  # no process restarted or died


def test_a_bad_tokens_file_is_one_line_at_boot(cluster: Cluster) -> None:
    path = cluster.workdir / "tokens.toml"
    path.write_text('[[tokens]]\nname = "ci"\nsha256 = "xyz"\nscopes = ["read"]\n')
    target = "all" if cluster.topology == "all" else "gateway"
    argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
    proc = cluster.spawn(f"trine-{target}", argv, TRINE_AUTH_TOKENS_FILE=str(path))
    assert proc.popen.wait(timeout=30) != 0
    lines = [line for line in proc.log.lines() if "tokens file" in line]
    assert len(lines) == 1, proc.log.tail()
    assert f"tokens file {path}: tokens[0] ('ci'): 'sha256' must be 64 hex digits" in lines[0]
