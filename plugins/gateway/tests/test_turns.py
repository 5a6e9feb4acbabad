"""The gateway's share of the event loop: ``requests_per_turn`` requests enter the app a turn."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from trine_core import ConfigError, Settings
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.connections import HttpLimits
from trine_gateway.metrics import HTTP_WAITED, HTTP_WAITING
from trine_gateway.settings import REQUESTS_PER_TURN
from trine_gateway.turns import Turns

HTTP = {"type": "http", "path": "/v1/runs"}


class TurnCounter:
    """Counts the loop's turns: a callback that queues itself again runs once a turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def entries(per_turn: int, requests: int) -> list[tuple[int, int]]:
    """(request number, turn) of each request as it entered the app, in the order they did."""
    counter = TurnCounter()
    entered: list[tuple[int, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.append((scope["n"], counter.turn))

    turns = Turns(app, per_turn)
    try:
        await asyncio.gather(*(turns({**HTTP, "n": n}, None, None) for n in range(requests)))
    finally:
        counter.stop()
    return entered


async def test_at_most_per_turn_requests_enter_a_turn_in_the_order_they_came() -> None:
    entered = await entries(per_turn=3, requests=10)
    assert [number for number, _ in entered] == list(range(10))
    per_turn = Counter(turn for _, turn in entered)
    assert max(per_turn.values()) == 3
    assert len(per_turn) == 4  # 3 + 3 + 3 + 1


async def test_newcomers_queue_behind_those_let_go_so_no_turn_runs_more_than_its_share() -> None:
    """Requests let go by a turn's callback run in the turn after it; one that arrives in
    between must not overtake them, nor add to the turn they run in."""
    counter = TurnCounter()
    entered: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.append((scope["name"], counter.turn))

    turns = Turns(app, 2)
    early = [asyncio.ensure_future(turns({**HTTP, "name": n}, None, None)) for n in "abcd"]
    await asyncio.sleep(0)  # a and b entered; c and d wait
    late = [asyncio.ensure_future(turns({**HTTP, "name": n}, None, None)) for n in "ef"]
    try:
        await asyncio.gather(*early, *late)
    finally:
        counter.stop()
    assert [name for name, _ in entered] == list("abcdef")
    assert max(Counter(turn for _, turn in entered).values()) == 2


async def test_without_a_limit_every_request_enters_at_once() -> None:
    entered = await entries(per_turn=0, requests=10)
    assert len({turn for _, turn in entered}) == 1


@pytest.mark.parametrize(
    "scope",
    [{"type": "lifespan"}, {**HTTP, "path": "/healthz"}, {**HTTP, "path": "/metrics"}],
    ids=["lifespan", "healthz", "metrics"],
)
async def test_what_must_answer_under_a_flood_never_waits(scope: dict[str, Any]) -> None:
    entered: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope.get("path", scope["type"]))

    turns = Turns(app, 1)
    first, waiting = [asyncio.ensure_future(turns(HTTP, None, None)) for _ in range(2)]
    await asyncio.sleep(0)  # this turn: the first entered, the second waits for the next
    assert entered == ["/v1/runs"]
    with pytest.raises(StopIteration):  # entered the app without yielding to the loop
        turns(scope, None, None).send(None)
    assert entered == ["/v1/runs", scope.get("path", "lifespan")]
    await asyncio.gather(first, waiting)


async def test_a_waiter_that_went_away_gives_its_place_to_the_next() -> None:
    entered: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope["n"])

    turns = Turns(app, 1)
    _, gone, kept = [asyncio.ensure_future(turns({**HTTP, "n": n}, None, None)) for n in range(3)]
    await asyncio.sleep(0)  # this turn: the first entered, the other two wait for the next
    assert entered == [0]
    gone.cancel()
    await asyncio.wait_for(kept, 5)
    assert entered == [0, 2]


async def test_nothing_is_queued_on_the_loop_once_nobody_waits() -> None:
    """The share is counted from a callback of the next turn, queued only while requests come
    or wait: an idle gateway must leave the loop idle, not requeue it every turn."""
    turns = Turns(lambda scope, receive, send: asyncio.sleep(0), 2)
    await asyncio.gather(*(turns(HTTP, None, None) for _ in range(5)))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not turns.counting


def test_requests_per_turn_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.requests_per_turn: must be 0"):
        HttpLimits.from_settings(Settings({REQUESTS_PER_TURN: -1}))
    assert HttpLimits.from_settings(Settings({REQUESTS_PER_TURN: 0})).requests_per_turn == 0


async def test_a_gateway_letting_one_request_in_a_turn_answers_them_all() -> None:
    app = create_app(MemoryEngine().backend, Settings(), lambda: True)
    server = GatewayServer(app, "127.0.0.1:0", Lifecycle(), limits=HttpLimits(requests_per_turn=1))
    waited = HTTP_WAITED.labels("GET").value
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            answers = await asyncio.gather(*(http.get("/v1/functions") for _ in range(30)))
    finally:
        await server.stop()
    assert [a.status_code for a in answers] == [200] * 30
    assert HTTP_WAITED.labels("GET").value > waited  # some came in one turn, and waited
    assert HTTP_WAITING.labels("GET").value == 0
