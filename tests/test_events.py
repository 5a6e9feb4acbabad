"""Events end to end, in every topology, read with ``trine.Client.events``: an event emitted
before a step that fails twice appears once, and a client follows a run's events through a
``kill -9`` of the runtime (split: of the engine) without an error, a gap or a duplicate."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from harness import Cluster

import trine

WORKER = "tests/workers/events_worker.py"


class CountingTransport(httpx.AsyncHTTPTransport):
    """Remembers the ``Last-Event-ID`` of every event-stream request (None: from the start)."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed_from: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.resumed_from.append(request.headers.get("last-event-id"))
        return await super().handle_async_request(request)


def assert_in_order_once(events: list[trine.Event]) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]


async def test_an_event_before_a_step_that_fails_twice_appears_once(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(WORKER)
    async with trine.Client(cluster.url) as client:
        run = await client.start("emit_then_flaky")
        async with asyncio.timeout(60):
            events = [event async for event in client.events(run["id"])]
        journal = await client.journal(run["id"])
    assert_in_order_once(events)
    custom = [(e.name, e.data) for e in events if e.type == "custom"]
    assert custom == [("before", {"run_id": run["id"]}), ("after", {"failures": 2})]
    failed = [e.data for e in events if e.type == "step.failed"]
    assert [(f["attempt"], "retry_at_ms" in f) for f in failed] == [(1, True), (2, True)]
    assert (events[-1].type, events[-1].data) == ("run.completed", 2)
    assert [(e["kind"], e["name"]) for e in journal] == [
        ("emit", "before"),
        ("step", "flaky"),
        ("emit", "after"),
    ]
    assert journal[1]["attempt"] == 3


async def test_client_events_follow_a_run_through_a_kill9_of_the_runtime(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.start_worker(WORKER)
    transport = CountingTransport()
    killed = "all" if cluster.topology == "all" else "engine"
    async with trine.Client(cluster.url, transport=transport) as client:
        run_id = (await client.start("emit_and_wait"))["id"]
        events: list[trine.Event] = []
        suspended = asyncio.Event()

        async def follow() -> None:
            async for event in client.events(run_id):
                events.append(event)
                if event.type == "signal.waiting":
                    suspended.set()

        follower = asyncio.create_task(follow())
        async with asyncio.timeout(30):
            await suspended.wait()  # the run waits for `go`, durably; the stream is open
        await asyncio.to_thread(cluster.restart, killed)  # kill -9, then start it again
        answer: dict[str, Any] = await client.signal(run_id, "go", {"by": "test"})
        assert answer["delivered"] is True
        async with asyncio.timeout(60):
            await follower  # raises whatever the stream raised
        result = await client.result(run_id)
    assert result == {"by": "test"}
    assert_in_order_once(events)
    assert [e.type for e in events] == [
        "run.started",
        "custom",
        "signal.waiting",
        "signal.received",
        "custom",
        "run.completed",
    ]
    custom = [(e.name, e.data) for e in events if e.type == "custom"]
    assert custom == [("waiting", {"for": "go"}), ("went", {"by": "test"})]
    # The stream broke with the process and was resumed after the last event it had.
    assert transport.resumed_from[0] is None
    assert "3" in transport.resumed_from[1:]
