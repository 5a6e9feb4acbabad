"""What the admin commands run against in these tests, each a real HTTP server on a free port:

- :class:`Served`: the real gateway app (uvicorn) in front of core's in-memory engine, with a
  worker the test scripts (:meth:`Served.finish`, :meth:`Served.suspend`);
- :class:`Canned`: a server answering every request with one fixed response, to see what the
  commands make of a server that is not a trine gateway, or of an older gateway.

The commands run in the test's own event loop (:func:`trine_admin.cli.execute`), so stdout and
stderr are pytest's ``capsys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from trine_admin.cli import execute, parse
from trine_core import Settings
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR
from trine_proto.trine.v1 import (
    Command,
    ErrorInfo,
    FunctionSpec,
    JournalEntry,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
    ReportRequest,
    RetryPolicy,
    RunBlocked,
    RunCompleted,
    RunFailed,
    StepCompleted,
    StepStarted,
    TakeWorkRequest,
    WaitSignal,
    WorkItem,
)

FUNCTIONS = (
    FunctionSpec(
        name="order",
        retry=RetryPolicy(
            max_attempts=5, initial_interval_ms=100, max_interval_ms=10_000, backoff_coefficient=2
        ),
    ),
    FunctionSpec(name="approval"),
)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Served:
    """The gateway at ``url``, its engine ``memory``; ``run(*argv)`` runs a command at it."""

    def __init__(self, memory: MemoryEngine, server: GatewayServer, capsys: Any) -> None:
        self.memory = memory
        self.server = server
        self.url = server.url
        self.capsys = capsys
        self.build_id = ""
        """The build the scripted worker registers and takes work as (none by default)."""

    async def run(self, *argv: str, url: str | None = None) -> Result:
        return await run_cli(self.capsys, *argv, url=url or self.url)

    async def register(self, *specs: FunctionSpec) -> None:
        """The scripted worker registers ``specs`` (default: every function) as ``build_id``."""
        request = RegisterFunctionsRequest(
            worker_id="w-1", functions=list(specs or FUNCTIONS), build_id=self.build_id
        )
        await self.memory.dispatcher.register_functions(request)

    async def lease(self, run_id: str) -> WorkItem:
        take = TakeWorkRequest(
            worker_id="w-1",
            functions=[f.name for f in FUNCTIONS],
            max_items=100,
            wait_ms=1,
            build_id=self.build_id,
        )
        items = (await self.memory.dispatcher.take_work(take)).items
        mine = [i for i in items if i.run is not None and i.run.id == run_id]
        others = [i.lease.id for i in items if i.lease and i.run and i.run.id != run_id]
        if others:  # back in line, in the order they were
            release = ReleaseLeasesRequest(lease_ids=others[::-1])
            await self.memory.dispatcher.release_leases(release)
        assert len(mine) == 1, f"run {run_id} is not ready"
        return mine[0]

    async def report(self, item: WorkItem, *commands: Command) -> None:
        assert item.run is not None
        assert item.lease is not None
        request = ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=[*commands])
        await self.memory.dispatcher.report(request)

    async def finish(self, run_id: str, result: Any = None, error: ErrorInfo | None = None) -> None:
        """Take the run, journal its step ``charge`` and end it with ``result`` or ``error``."""
        item = await self.lease(run_id)
        entry = JournalEntry(index=0, name="charge", output=_json({"charged": 5}), attempt=1)
        end = (
            Command(run_failed=RunFailed(error=error))
            if error is not None
            else Command(run_completed=RunCompleted(result=_json(result)))
        )
        await self.report(
            item,
            Command(step_started=StepStarted(index=0, name="charge", attempt=1)),
            Command(step_completed=StepCompleted(entry=entry)),
            end,
        )

    async def block(self, run_id: str, error: ErrorInfo) -> None:
        """Take the run and hold it as blocked by a workflow error."""
        item = await self.lease(run_id)
        await self.report(item, Command(run_blocked=RunBlocked(error=error)))

    async def suspend(self, run_id: str, signal: str = "approve") -> None:
        """Take the run, journal a step and a wait for ``signal``; it suspends."""
        item = await self.lease(run_id)
        entry = JournalEntry(index=0, name="open", output=_json("ticket-1"), attempt=1)
        await self.report(
            item,
            Command(step_started=StepStarted(index=0, name="open", attempt=1)),
            Command(step_completed=StepCompleted(entry=entry)),
            Command(wait_signal=WaitSignal(index=1, name=signal, timeout_ms=0)),
        )


async def run_cli(capsys: Any, *argv: str, url: str | None) -> Result:
    """``trine <argv>`` (with ``--url url``) in this event loop; what it printed."""
    capsys.readouterr()
    name, *rest = argv
    extra = ["--url", url] if url is not None else []
    try:
        code = await execute(parse(name, f"trine {name}", [*rest, *extra]))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@contextlib.asynccontextmanager
async def served(capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Served]:
    memory = MemoryEngine(functions=FUNCTIONS)
    settings = Settings({HTTP_ADDR: "127.0.0.1:0"})
    lifecycle = Lifecycle()
    app = create_app(memory.backend, settings, lambda: True, lifecycle=lifecycle, keepalive_s=1)
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        yield Served(memory, server, capsys)
    finally:
        await server.stop()


class Canned:
    """Answers every request with ``status``, ``content_type`` and ``body``."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.paths: list[str] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Canned:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.paths.append(head.split(b" ")[1].decode())
        writer.write(
            f"HTTP/1.1 {self.status} X\r\ncontent-type: {self.content_type}\r\n"
            f"content-length: {len(self.body)}\r\nconnection: close\r\n\r\n".encode()
            + self.body
        )
        await writer.drain()
        writer.close()
