"""A worker's credential and identity (issue 13): its token and instance go with each stream; a
refusal is one ERROR line per distinct reason, retried with a growing pause (never a tight loop)
until the coordinator admits it; the default worker id is unique per process."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from typing import Any

import grpclib
import grpclib.server
import pytest
from grpclib.const import Cardinality, Handler, Status

import trine
from trine import _connection
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage

TOKEN = "trine_" + "x" * 43


class Gate:
    """In front of the fake coordinator: refuses a stream with each error of ``refusals`` in
    turn before it lets one through; notes every stream's metadata and when it came."""

    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator
        self.refusals: list[grpclib.GRPCError] = []
        self.attempts: list[tuple[float, dict[str, Any]]] = []

    def mapping(self) -> dict[str, Handler]:
        return {
            "/trine.v1.WorkerService/Connect": Handler(
                self.connect, Cardinality.STREAM_STREAM, WorkerMessage, CoordinatorMessage
            )
        }

    async def connect(
        self, stream: grpclib.server.Stream[WorkerMessage, CoordinatorMessage]
    ) -> None:
        self.attempts.append((time.monotonic(), dict(stream.metadata or {})))
        await self.coordinator.notify()
        if self.refusals:
            raise self.refusals.pop(0)
        fake = self.coordinator
        await fake._call_rpc_handler_server_stream(fake.connect, stream, stream.__aiter__())


@pytest.fixture
async def gate(coordinator: Any) -> Gate:
    """The fake coordinator (same port) serving through a :class:`Gate`."""
    gate = Gate(coordinator)
    await coordinator.stop()
    coordinator.__mapping__ = gate.mapping  # what its server is built from at start
    await coordinator.start()
    return gate


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusal pauses of 50 ms doubling to 200 ms, so a test sees several."""
    monkeypatch.setattr(_connection, "REFUSED_BACKOFF", 0.05)
    monkeypatch.setattr(_connection, "MAX_REFUSED_BACKOFF", 0.2)


def a_worker(make_worker: Any, **kwargs: Any) -> trine.Worker:
    worker = make_worker(**kwargs)

    @worker.function
    async def order(ctx: trine.Context, order: dict) -> dict:
        return order

    return worker


def refused_lines(logs: Any) -> list[str]:
    return [m for m in logs.messages(logging.ERROR) if "refused worker" in m]


async def test_the_token_and_the_instance_go_with_the_stream(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any
) -> None:
    worker = a_worker(make_worker, token=TOKEN)
    serve(worker)
    await coordinator.registered()
    [(_, metadata)] = gate.attempts
    assert metadata["authorization"] == f"Bearer {TOKEN}"
    assert metadata["trine-worker-instance"] == worker.instance


async def test_the_token_comes_from_trine_token(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRINE_TOKEN", TOKEN)
    serve(a_worker(make_worker))
    await coordinator.registered()
    assert gate.attempts[0][1]["authorization"] == f"Bearer {TOKEN}"
    assert a_worker(make_worker, token="trine_other").token == "trine_other"


async def test_without_a_token_none_is_sent(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRINE_TOKEN", raising=False)
    serve(a_worker(make_worker))
    await coordinator.registered()
    assert "authorization" not in gate.attempts[0][1]


@pytest.mark.usefixtures("quick")
async def test_a_refusal_is_one_error_line_and_a_growing_pause(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any, logs: Any
) -> None:
    why = "this coordinator needs a worker token: set TRINE_TOKEN; none was sent"
    gate.refusals = [grpclib.GRPCError(Status.UNAUTHENTICATED, why) for _ in range(5)]
    serve(a_worker(make_worker))
    await coordinator.registered()  # admitted at the sixth attempt
    [line] = refused_lines(logs)
    assert "worker w-test without a token" in line
    assert why in line
    assert "(unauthenticated)" in line
    assert "To fix: set TRINE_TOKEN" in line
    await logs.wait(lambda r: "admits this worker now" in r.getMessage())
    times = [at for at, _ in gate.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 5
    # 50 ms doubling, capped at 200 ms, each within ±20% (a little slack for the round trip).
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2, 0.2, 0.2), strict=True):
        assert gap >= expected * 0.8 - 0.005, gaps


@pytest.mark.usefixtures("quick")
async def test_each_distinct_refusal_is_logged_once(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any, logs: Any
) -> None:
    denied = "token 'others' may not serve order (it may serve: other)"
    taken = "worker_id 'w-test' is held by another live worker"
    gate.refusals = [
        grpclib.GRPCError(Status.PERMISSION_DENIED, denied),
        grpclib.GRPCError(Status.PERMISSION_DENIED, denied),
        grpclib.GRPCError(Status.ALREADY_EXISTS, taken),
        grpclib.GRPCError(Status.ALREADY_EXISTS, taken),
    ]
    serve(a_worker(make_worker, token=TOKEN))
    await coordinator.registered()
    first, second = refused_lines(logs)
    assert denied in first
    assert "with a token" in first
    assert "'functions'" in first
    assert taken in second
    assert "its own worker_id" in second


async def test_a_worker_refused_for_good_does_not_spin(
    gate: Gate, coordinator: Any, make_worker: Any, serve: Any, logs: Any
) -> None:
    """The real pauses: 1 s, then 2 s... so over 2.5 s there are three attempts at most."""
    refusal = grpclib.GRPCError(Status.UNAUTHENTICATED, "needs a worker token")
    gate.refusals = [refusal] * 1000
    serve(a_worker(make_worker))
    await coordinator.until(lambda: len(gate.attempts) >= 1)
    await asyncio.sleep(2.5)  # the time that passes is what is measured
    assert 2 <= len(gate.attempts) <= 3
    assert len(refused_lines(logs)) == 1


def test_the_default_worker_id_is_unique_per_worker() -> None:
    first, second = trine.Worker(), trine.Worker()
    prefix = f"{socket.gethostname()}-{os.getpid()}-"
    assert first.worker_id.startswith(prefix)
    assert len(first.worker_id) == len(prefix) + 6
    assert first.worker_id != second.worker_id
    assert first.instance != second.instance


def test_a_token_that_cannot_be_a_header_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        trine.Worker(token="trine_a b")
    assert trine.Worker(token="  ").token is None
