"""``trine functions``, ``trine workers``, what every command does when no trine gateway answers,
usage errors, and how the commands reach the ``trine`` program (core's ``trine.commands``)."""

from __future__ import annotations

import json

import pytest
from served import Canned, Served, run_cli

from trine_core.cli import main as trine_main
from trine_core.testing import free_port


async def test_functions_table_and_json(gateway: Served) -> None:
    result = await gateway.run("functions")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split()[:2] == ["FUNCTION", "RETRY"]
    by_name = {row.split()[0]: row for row in rows}
    assert by_name["order"].split(None, 1)[1].startswith("5 attempts, 100 ms to 10.00 s, x2")
    document = (await gateway.run("functions", "--json")).json()
    assert sorted(f["name"] for f in document["functions"]) == ["approval", "order"]


async def test_no_functions_yet(gateway: Served) -> None:
    gateway.memory.functions.clear()
    result = await gateway.run("functions")
    assert (result.code, result.out) == (0, "")
    assert result.err == "no functions registered: no worker has connected yet\n"


async def test_workers_from_a_gateway_without_the_route_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = b'{"error": {"code": "not_found", "message": "no route for GET /v1/workers"}}'
    async with Canned(404, body) as old:
        result = await run_cli(capsys, "workers", url=old.url)
    assert old.paths == ["/v1/workers"]
    assert result.code == 1
    assert result.err == (
        f"error: not_found: the gateway at {old.url} does not serve GET /v1/workers "
        "(a trine older than the workers API)\n"
    )


def worker(worker_id: str, coordinator: str, **fields: object) -> dict[str, object]:
    """A worker as GET /v1/workers lists it."""
    return {
        "worker_id": worker_id,
        "session_id": f"s-{worker_id}",
        "sdk_version": "0.1.0",
        "functions": ["order", "approval"],
        "max_concurrency": 100,
        "in_flight": 0,
        "free_slots": 100,
        "runs": [],
        "connected_at": "2025-01-31T11:00:00.000Z",
        "last_heartbeat_at": "2025-01-31T12:00:00.000Z",
        "draining": False,
        "coordinator": coordinator,
        **fields,
    }


async def test_workers_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    run = {
        "run_id": "01JRUN",
        "function": "order",
        "since": "2025-01-31T11:59:59.000Z",
        "attempt": 2,
        "step": "charge",
    }
    document = {
        "workers": [worker("w-1", "c:7481", in_flight=1, free_slots=99, runs=[run])],
        "unavailable": [],
    }
    async with Canned(200, json.dumps(document).encode()) as gateway:
        table = await run_cli(capsys, "workers", url=gateway.url)
        with_runs = await run_cli(capsys, "workers", "--runs", url=gateway.url)
        as_json = await run_cli(capsys, "workers", "--json", url=gateway.url)
    header, row = table.out.splitlines()
    assert header == "WORKER  FUNCTIONS       MAX  IN FLIGHT  FREE  LAST HEARTBEAT"
    assert row.split()[:6] == [
        "w-1",
        "order,approval",
        "100",
        "1",
        "99",
        "2025-01-31T12:00:00.000Z",
    ]
    assert row.endswith(" ago)")
    assert table.err == ""
    assert as_json.json() == document
    assert with_runs.out.splitlines()[3:] == [
        "RUN     FUNCTION  WORKER  ATTEMPT  SINCE                     STEP",
        "01JRUN  order     w-1           2  2025-01-31T11:59:59.000Z  charge",
    ]


async def test_workers_of_several_coordinators_draining_and_one_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = {"code": "unavailable", "message": "grpc://c3:7481: connection refused"}
    document = {
        "workers": [worker("w-1", "c1:7481"), worker("w-2", "c2:7481", draining=True)],
        "unavailable": [missing],
    }
    async with Canned(200, json.dumps(document).encode()) as gateway:
        result = await run_cli(capsys, "workers", url=gateway.url)
    assert result.code == 0
    header, first, second = result.out.splitlines()
    assert header.split()[-2:] == ["STATE", "COORDINATOR"]
    assert first.split()[-2:] == ["serving", "c1:7481"]
    assert second.split()[-2:] == ["draining", "c2:7481"]
    assert result.err == (
        "warning: a coordinator did not answer, its workers are missing: unavailable: "
        "grpc://c3:7481: connection refused\n"
    )


async def test_no_workers(capsys: pytest.CaptureFixture[str]) -> None:
    async with Canned(200, b'{"workers": []}') as gateway:
        result = await run_cli(capsys, "workers", url=gateway.url)
    assert (result.code, result.out, result.err) == (0, "", "no workers connected\n")


@pytest.mark.parametrize(
    "argv",
    [
        ("runs", "list"),
        ("runs", "show", "r"),
        ("runs", "journal", "r"),
        ("runs", "events", "r"),
        ("runs", "start", "order", "{}"),
        ("runs", "cancel", "r"),
        ("runs", "signal", "r", "s"),
        ("functions",),
        ("workers",),
    ],
)
async def test_an_unreachable_url_is_one_line_naming_it_exit_3(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_cli(capsys, *argv, url=url)
    assert result.code == 3
    assert result.out == ""
    assert result.err.startswith(f"error: cannot reach the trine gateway at {url}: ")
    assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize(
    ("status", "body", "content_type", "says"),
    [
        (200, b"<html>hello</html>", "text/html", "does not answer as a trine gateway does: "),
        (
            404,
            b"<html>\n<body>Not Found</body>\n</html>",
            "text/html",
            "does not answer as a trine gateway does (HTTP 404: <html> <body>Not Found",
        ),
    ],
)
async def test_something_else_at_the_url_is_one_line_exit_3(
    capsys: pytest.CaptureFixture[str], status: int, body: bytes, content_type: str, says: str
) -> None:
    async with Canned(status, body, content_type) as other:
        result = await run_cli(capsys, "runs", "list", url=other.url)
    assert result.code == 3
    assert result.err.startswith(f"error: {other.url} {says}")
    assert len(result.err.splitlines()) == 1


async def test_the_url_comes_from_trine_url(
    gateway: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRINE_URL", gateway.url)
    result = await run_cli(capsys, "functions", url=None)
    assert result.code == 0
    monkeypatch.setenv("TRINE_URL", "localhost:7480")
    result = await run_cli(capsys, "functions", url=None)
    assert result.code == 2
    assert result.err.endswith(
        "error: TRINE_URL 'localhost:7480' is not an http:// or https:// URL\n"
    )
    result = await run_cli(capsys, "functions", url="ftp://x")
    assert result.code == 2
    assert "--url 'ftp://x' is not an http:// or https:// URL" in result.err


def test_the_commands_are_the_trine_programs(capsys: pytest.CaptureFixture[str]) -> None:
    """Through core's dispatch and the installed ``trine.commands`` entry points."""
    assert trine_main(["runs", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trine runs ")
    assert "exit codes:" in out
    for sub in ("list", "show", "journal", "events", "start", "cancel", "signal"):
        assert f"    {sub} " in out
    assert trine_main(["workers", "--help"]) == 0
    assert trine_main(["functions", "--help"]) == 0
    assert trine_main(["runs"]) == 2  # a subcommand is required
    assert "the following arguments are required: SUBCOMMAND" in capsys.readouterr().err
    assert trine_main(["runs", "frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    url = f"http://127.0.0.1:{free_port()}"
    assert trine_main(["functions", "--url", url]) == 3
    assert capsys.readouterr().err.startswith(f"error: cannot reach the trine gateway at {url}")
