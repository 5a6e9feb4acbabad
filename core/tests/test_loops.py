"""Calls across event loops (``own_loop``): each runs on the loop that owns the object, with the
caller's context, its outcome and its cancellation carried across."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

import pytest
from roles import Greeter, InlineRoles, Provider, events

from trine_core import TARGET, ConfigError, RoleContext, RoleRegistry, Runtime, Settings, hookimpl
from trine_core.loops import LoopThread, across, app_across
from trine_core.plugins import ROLES_GROUP, PluginSet
from trine_core.settings import OWN_LOOP

TRACE: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")


class Stock(Protocol):
    async def count(self, item: str) -> int: ...

    async def wait_forever(self) -> None: ...

    def watch(self, item: str) -> AsyncIterator[int]: ...

    def tally(self, items: AsyncIterator[str]) -> AsyncIterator[int]: ...


class Shelf:
    """Records on which thread, and with which trace, each call ran."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.traces: list[str] = []
        self.entered = threading.Event()  # waited for from the other loop
        self.closed = asyncio.Event()
        self.cancelled = asyncio.Event()

    def _seen(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.traces.append(TRACE.get())
        self.entered.set()

    async def count(self, item: str) -> int:
        self._seen()
        if item == "nothing":
            raise KeyError(item)
        return len(item)

    async def wait_forever(self) -> None:
        self._seen()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    async def watch(self, item: str) -> AsyncIterator[int]:
        self._seen()
        try:
            for n in range(1000):
                yield n
        finally:
            self.closed.set()

    async def tally(self, items: AsyncIterator[str]) -> AsyncIterator[int]:
        self._seen()
        async for item in items:
            yield len(item)


@pytest.fixture
async def other() -> AsyncIterator[LoopThread]:
    thread = LoopThread("test-other-loop")
    yield thread
    await thread.close()


async def test_a_call_runs_on_the_owners_loop_with_the_callers_context(
    other: LoopThread,
) -> None:
    shelf = Shelf()
    home = asyncio.get_running_loop()

    async def from_other() -> int:
        TRACE.set("trace-1")
        stock = across(Stock, shelf, home)
        count = await stock.count("apple")
        with pytest.raises(KeyError):
            await stock.count("nothing")
        return count

    assert await other.run(from_other()) == 5
    assert shelf.threads == [threading.current_thread().name] * 2
    assert shelf.traces == ["trace-1"] * 2


async def test_cancelling_the_caller_cancels_the_call(other: LoopThread) -> None:
    shelf = Shelf()
    home = asyncio.get_running_loop()

    async def from_other() -> None:
        call = asyncio.ensure_future(across(Stock, shelf, home).wait_forever())
        assert await asyncio.to_thread(shelf.entered.wait, 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    await other.run(from_other())
    async with asyncio.timeout(5):
        await shelf.cancelled.wait()


async def test_a_stream_is_iterated_and_closed_on_the_owners_loop(other: LoopThread) -> None:
    shelf = Shelf()
    home = asyncio.get_running_loop()

    async def from_other() -> list[int]:
        got = []
        async for n in across(Stock, shelf, home).watch("apple"):
            got.append(n)
            if len(got) == 3:
                break
        return got

    assert await other.run(from_other()) == [0, 1, 2]
    async with asyncio.timeout(5):
        await shelf.closed.wait()  # the caller left: the generator was closed where it lives
    assert shelf.threads == [threading.current_thread().name]


async def test_an_iterator_argument_is_read_on_the_callers_loop(other: LoopThread) -> None:
    shelf = Shelf()
    home = asyncio.get_running_loop()
    read_on: list[str] = []

    async def from_other() -> list[int]:
        async def items() -> AsyncIterator[str]:
            for item in ("a", "bb", "ccc"):
                read_on.append(threading.current_thread().name)
                yield item

        return [n async for n in across(Stock, shelf, home).tally(items())]

    assert await other.run(from_other()) == [1, 2, 3]
    assert read_on == ["test-other-loop"] * 3
    assert shelf.threads == [threading.current_thread().name]


async def test_an_asgi_app_runs_on_its_loop_and_answers_through_the_servers(
    other: LoopThread,
) -> None:
    ran_on: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran_on.append(threading.current_thread().name)
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.upper()})

    home = asyncio.get_running_loop()
    sent_on: list[tuple[str, Any]] = []

    async def served() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"hi", "more_body": False}

        async def send(message: Any) -> None:
            sent_on.append((threading.current_thread().name, message.get("body")))

        await app_across(app, home)({"type": "http"}, receive, send)

    await other.run(served())
    assert ran_on == [threading.current_thread().name]
    assert sent_on == [("test-other-loop", None), ("test-other-loop", b"HI")]


class Visitor:
    """Needs a Greeter and serves nothing: may have a loop of its own."""

    name: ClassVar[str] = "visitor"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset({Greeter})
    seen: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        greeting = await context.need(Greeter).greet("ada")
        Visitor.seen.append((threading.current_thread().name, greeting))
        events.append("start visitor")

    async def stop(self) -> None:
        Visitor.seen.append((threading.current_thread().name, "stop"))
        events.append("stop visitor")

    def ready(self) -> bool:
        return True


class VisitorRoles:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("visitor", Visitor)


def own_loop(target: str, roles: str) -> Settings:
    return Settings({TARGET: target, OWN_LOOP: tuple(roles.split(","))})


async def test_a_role_on_its_own_loop_calls_its_needs_across() -> None:
    events.clear()
    Visitor.seen.clear()
    runtime = Runtime(own_loop("provider,visitor", "visitor"), (InlineRoles(), VisitorRoles()))
    await runtime.start()
    await runtime.stop()
    assert Visitor.seen == [("trine-visitor", "hello ada"), ("trine-visitor", "stop")]
    assert events == ["start provider", "start visitor", "stop visitor", "stop provider"]
    assert not [t for t in threading.enumerate() if t.name == "trine-visitor"]


async def test_an_own_loop_name_no_installed_role_has_is_refused() -> None:
    runtime = Runtime(own_loop("provider,visitor", "vistor"), (InlineRoles(), VisitorRoles()))
    with pytest.raises(ConfigError, match=r"own_loop: unknown role 'vistor' \(known: .*visitor"):
        await runtime.start()


async def test_an_own_loop_role_installed_but_run_elsewhere_is_skipped() -> None:
    """One setting serves every process of a deployment."""
    runtime = Runtime(own_loop("provider", "visitor"), (InlineRoles(), VisitorRoles()))
    await runtime.start()
    assert list(runtime.roles) == ["provider"]
    await runtime.stop()


async def test_an_own_loop_role_whose_plugin_failed_to_import_does_not_stop_a_boot_without_it() -> (
    None
):
    """A broken plugin stops only a boot that needs it (trine_core.plugins)."""
    plugins = PluginSet.load((InlineRoles(),), ())
    plugins.failures[(ROLES_GROUP, "broken")] = "plugin 'broken' failed to import"
    runtime = Runtime(own_loop("provider", "broken"), plugins=plugins)
    await runtime.start()
    assert list(runtime.roles) == ["provider"]
    await runtime.stop()


async def test_a_role_that_serves_a_contract_cannot_have_its_own_loop() -> None:
    runtime = Runtime(own_loop("provider,visitor", "provider"), (InlineRoles(), VisitorRoles()))
    with pytest.raises(ConfigError, match="own_loop: role 'provider' serves greeter"):
        await runtime.start()


async def test_a_role_alone_in_its_process_keeps_the_process_loop() -> None:
    events.clear()
    runtime = Runtime(own_loop("provider", "provider"), (InlineRoles(),))
    await runtime.start()
    assert isinstance(runtime.roles["provider"], Provider)
    await runtime.stop()
    assert events == ["start provider", "stop provider"]
