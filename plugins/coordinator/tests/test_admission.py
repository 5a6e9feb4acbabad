"""Who may hold a worker session (issue 13): a worker token with scope ``worker``, only the
functions it may serve, and one live session per ``worker_id`` (never two taking turns)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpclib
import pytest
from conftest import FUNCTION, Harness, WorkerStream, dispatched, running
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError
from structlog.testing import capture_logs

from trine_coordinator import CoordinatorRole
from trine_coordinator.admission import INSTANCE, bearer
from trine_core.auth import hash_token, new_token
from trine_core.instruments import REGISTRY
from trine_core.testing import eventually
from trine_proto.trine.v1 import FunctionSpec, Register, WorkerMessage

WORKER_TOKEN = new_token()
OTHER_TOKEN = new_token()
READ_TOKEN = new_token()


def write_tokens(path: Path, *entries: tuple[str, str, list[str], list[str] | None]) -> Path:
    """A tokens file of ``(name, token, scopes, functions)`` entries."""
    lines = []
    for name, token, scopes, functions in entries:
        lines += ["[[tokens]]", f'name = "{name}"', f'sha256 = "{hash_token(token)}"']
        lines.append(f"scopes = {scopes!r}".replace("'", '"'))
        if functions is not None:
            lines.append(f"functions = {functions!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


EVERYONE = (
    ("workers", WORKER_TOKEN, ["worker"], None),
    ("others", OTHER_TOKEN, ["worker"], ["other"]),
    ("ci", READ_TOKEN, ["read", "write"], None),
)


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[CoordinatorRole, Harness]]:
    tokens = write_tokens(tmp_path / "tokens.toml", *EVERYONE)
    async with running(tokens_file=tokens) as started:
        yield started


async def refusal(
    harness: Harness, metadata: dict[str, str] | None = None, worker_id: str = "w1"
) -> grpclib.GRPCError:
    """The error a stream opened with ``metadata`` that registers ``FUNCTION`` ends with (where
    it surfaces depends on how far the stream got: the headers, the Register, or the answer)."""
    register = Register(worker_id=worker_id, functions=[FunctionSpec(name=FUNCTION)])
    try:
        async with harness.open(metadata) as stream:
            await stream.send_request()
            with contextlib.suppress(StreamTerminatedError):  # the coordinator ended it first
                await stream.send_message(WorkerMessage(register=register))
            await asyncio.wait_for(stream.recv_message(), 5)
    except grpclib.GRPCError as exc:
        return exc
    raise AssertionError("the stream was not refused")


async def until_ended(worker: WorkerStream) -> None:
    """Read the worker's stream until it ends (an error raises)."""
    while await worker.recv() is not None:
        pass


def registrations(harness: Harness) -> int:
    return sum(name == "register_functions" for name, _ in harness.memory.calls)


# -- tokens ----------------------------------------------------------------------------------------


async def test_a_worker_without_a_token_is_refused_and_told_what_to_do(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (_, harness):
        with capture_logs() as logs:
            error = await refusal(harness)
        assert error.status == Status.UNAUTHENTICATED
        assert "TRINE_TOKEN" in (error.message or "")
        assert "'worker'" in (error.message or "")
        assert "none was sent" in (error.message or "")
        assert registrations(harness) == 0
        [line] = [e for e in logs if e["event"] == "worker refused"]
        assert line["code"] == "unauthenticated"


async def test_an_unknown_token_is_unauthenticated(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (_, harness):
        error = await refusal(harness, auth(new_token()))
        assert error.status == Status.UNAUTHENTICATED
        assert "not in it" in (error.message or "")
        error = await refusal(harness, {"authorization": WORKER_TOKEN})  # not "Bearer <token>"
        assert error.status == Status.UNAUTHENTICATED


def refused_count(reason: str) -> float:
    """``trine_workers_refused_total{reason}`` so far (the registry is the process's)."""
    instrument = REGISTRY.get("trine_workers_refused_total")
    assert instrument is not None
    samples = instrument.collect().samples
    return sum(s.value for s in samples if s.labels == (reason,))


async def test_a_token_without_the_worker_scope_is_permission_denied(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (_, harness):
        before = refused_count("permission_denied")
        error = await refusal(harness, auth(READ_TOKEN))
        assert refused_count("permission_denied") == before + 1
        assert error.status == Status.PERMISSION_DENIED
        assert "token 'ci' lacks scope 'worker'" in (error.message or "")
        assert registrations(harness) == 0


async def test_a_token_for_other_functions_registers_nothing(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (role, harness):
        error = await refusal(harness, auth(OTHER_TOKEN))
        assert error.status == Status.PERMISSION_DENIED
        assert f"token 'others' may not serve {FUNCTION}" in (error.message or "")
        assert "it may serve: other" in (error.message or "")
        # Nothing reached the engine: the function's settings are not this worker's to change.
        assert registrations(harness) == 0
        assert role.service is not None
        assert role.service.sessions == {}


async def test_a_worker_token_is_admitted_and_named(tmp_path: Path) -> None:
    async with (
        guarded(tmp_path) as (role, harness),
        harness.worker(metadata=auth(WORKER_TOKEN)) as worker,
    ):
        [r1] = await harness.start()
        assert await dispatched(worker) == r1
        assert role.service is not None
        assert role.service.sessions["w1"].token_name == "workers"
        assert role.workers()[0]["token"] == "workers"
        await worker.stream.end()


async def test_a_revoked_token_closes_its_session_at_the_reload(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.toml", *EVERYONE)
    async with running(tokens_file=tokens) as (role, harness):
        assert role.service is not None
        sessions = role.service.sessions
        held: list[WorkerStream] = []

        async def serve_until_revoked() -> None:
            async with harness.worker(metadata=auth(WORKER_TOKEN)) as worker:
                held.append(worker)
                [r1] = await harness.start()
                assert await dispatched(worker) == r1
                write_tokens(tokens, *EVERYONE[1:])  # "workers" revoked...
                await asyncio.sleep(1.5)  # ...but the file is read again only on SIGHUP
                assert "w1" in sessions
                os.kill(os.getpid(), signal.SIGHUP)
                await until_ended(worker)

        with pytest.raises(grpclib.GRPCError) as ended:
            await serve_until_revoked()
        assert ended.value.status == Status.UNAUTHENTICATED
        assert "token 'workers' was revoked" in (ended.value.message or "")
        assert await harness.released(1) == list(held[0].leases.values())
        # And it cannot come back with that token.
        error = await refusal(harness, auth(WORKER_TOKEN))
        assert error.status == Status.UNAUTHENTICATED


async def test_without_a_tokens_file_any_worker_connects() -> None:
    async with running() as (role, harness), harness.worker() as worker:
        assert role.service is not None
        assert role.service.sessions["w1"].token_name == ""
        await worker.stream.end()


def test_bearer() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer(b"bearer  abc ") == "abc"
    assert bearer("Basic abc") == ""
    assert bearer(None) == ""


# -- one live session per worker_id ---------------------------------------------------------------


async def test_a_second_live_worker_with_one_id_is_refused_not_fenced(
    coordinator: Harness,
) -> None:
    async with coordinator.worker("same") as old:
        [r1] = await coordinator.start()
        assert await dispatched(old) == r1
        before = registrations(coordinator)
        with capture_logs() as logs:
            error = await refusal(coordinator, worker_id="same")
        assert error.status == Status.ALREADY_EXISTS
        assert "worker_id 'same' is held by another live worker" in (error.message or "")
        assert "give each worker its own worker_id" in (error.message or "")
        assert registrations(coordinator) == before  # refused before the engine heard of it
        assert not [e for e in logs if e["event"] == "worker fenced"]
        assert coordinator.released_so_far() == []  # the live worker keeps its run
        await old.report(r1)
        assert (await old.recv()) is not None  # its ack: still served
        await old.stream.end()


async def test_the_same_worker_reconnecting_replaces_its_old_session(coordinator: Harness) -> None:
    me = {INSTANCE: "abc123"}
    async with coordinator.worker("same", metadata=me) as old:
        [r1] = await coordinator.start()
        assert await dispatched(old) == r1
        async with coordinator.worker("same", metadata=me) as new:
            assert await old.recv() is None  # the old stream was ended by the coordinator
            assert await coordinator.released(1) == [old.leases[r1]]
            assert await dispatched(new) == r1  # given back, so dispatched again at once
            assert new.leases[r1] != old.leases[r1]
            await new.stream.end()
        await old.stream.end()


@pytest.mark.parametrize("heartbeat_ms", [400])
async def test_a_silent_session_yields_its_id(coordinator: Harness) -> None:
    async with coordinator.worker("same") as old:
        await asyncio.sleep(1.5)  # silent past three intervals (1.2 s), not yet dropped (2 s)
        async with coordinator.worker("same") as new:
            assert await old.recv() is None
            await new.stream.end()
        await old.stream.end()


async def test_a_worker_whose_connection_closed_gets_its_id_back_at_once() -> None:
    """A worker restarting after a crash: its old TCP connection is gone, so its old session
    ends then, not five heartbeat intervals (5 s here) later."""
    async with running() as (role, harness):
        assert role.service is not None
        sessions = role.service.sessions
        async with harness.open() as stream:
            await stream.send_request()
            await WorkerStream(stream).register("same")
            assert "same" in sessions
            harness.channels[-1].close()  # the process died: its connection closes
            # polled: a session ending is no event a test can await
            await eventually(lambda: "same" not in sessions, "the session ended", timeout_s=1.0)
            with contextlib.suppress(Exception):
                await stream.cancel()
        async with harness.worker("same") as new:
            [r1] = await harness.start()
            assert await dispatched(new) == r1
            await new.stream.end()
