"""The resolver, with inline plugins standing in for installed ones."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

import pytest

from trine_core import ConfigError, RoleContext, RoleRegistry, Runtime, Settings, hookimpl
from trine_core.runtime import role_names

events: list[str] = []


class Provider:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[str]] = frozenset({"backend"})
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.backend = object()

    async def start(self, context: RoleContext) -> None:
        events.append("start engine")

    async def stop(self) -> None:
        events.append("stop engine")

    def provide(self, kind: str) -> object:
        return self.backend

    def ready(self) -> bool:
        return True


class Consumer:
    name: ClassVar[str] = "gateway"
    serves: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[str]] = frozenset({"backend"})
    got: ClassVar[list[object]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        events.append("start gateway")
        Consumer.got.append(context.need("backend"))

    async def stop(self) -> None:
        events.append("stop gateway")

    def provide(self, kind: str) -> object:
        raise KeyError(kind)

    def ready(self) -> bool:
        return True


class InlinePlugin:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("engine", Provider)
        registry.add_role("gateway", Consumer)


@pytest.fixture(autouse=True)
def _clear() -> None:
    events.clear()
    Consumer.got.clear()


def test_role_names_orders_providers_first() -> None:
    assert role_names(Settings(target="gateway,engine")) == ["engine", "gateway"]
    assert role_names(Settings(target="all")) == ["engine", "coordinator", "gateway"]
    with pytest.raises(ConfigError, match="names no role"):
        role_names(Settings(target=" , "))


async def test_inproc_wiring_hands_over_the_object_and_stops_in_reverse() -> None:
    # Not every built-in role runs here, so the backend is also served over gRPC: on any free port.
    settings = Settings(target="engine,gateway", engine_addr="127.0.0.1:0")
    runtime = Runtime(settings, extra_plugins=(InlinePlugin(),))
    await runtime.start()
    engine = runtime.roles["engine"]
    assert Consumer.got == [engine.provide("backend")]  # the very object: nothing serialized
    assert runtime.ready()
    await runtime.stop()
    assert events == ["start engine", "start gateway", "stop gateway", "stop engine"]


async def test_unknown_role_lists_known_ones() -> None:
    runtime = Runtime(Settings(target="engine,bogus"), extra_plugins=(InlinePlugin(),))
    with pytest.raises(ConfigError, match=r"unknown role 'bogus' \(known: .*engine"):
        await runtime.start()


async def test_unknown_transport_scheme() -> None:
    settings = Settings(target="gateway", connect={"backend": "nats://somewhere"})
    runtime = Runtime(settings, extra_plugins=(InlinePlugin(),))
    with pytest.raises(ConfigError, match="unknown transport 'nats'"):
        await runtime.start()


async def test_need_nobody_provides_here() -> None:
    settings = Settings(target="gateway", connect={"backend": "inproc://"})
    runtime = Runtime(settings, extra_plugins=(InlinePlugin(),))
    with pytest.raises(ConfigError, match="nothing in this process serves backend"):
        await runtime.start()


async def test_two_plugins_claiming_a_name_is_an_error_naming_both() -> None:
    class Other:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("engine", Provider)

    runtime = Runtime(Settings(target="engine"), extra_plugins=(InlinePlugin(), Other()))
    with pytest.raises(ConfigError, match="provided by two plugins"):
        await runtime.start()


async def test_a_failing_start_stops_what_started() -> None:
    class Broken(Consumer):
        async def start(self, context: RoleContext) -> None:
            raise ConfigError("gateway: cannot listen")

    class Plugin:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("engine", Provider)
            registry.add_role("gateway", Broken)

    settings = Settings(target="engine,gateway", engine_addr="127.0.0.1:0")
    runtime = Runtime(settings, extra_plugins=(Plugin(),))
    with pytest.raises(ConfigError, match="cannot listen"):
        await runtime.start()
    assert events == ["start engine", "stop engine"]


async def test_misspelled_hook_fails_at_boot() -> None:
    class Typo:
        @hookimpl
        def trine_register_role(self, registry: Any) -> None:
            pass

    runtime = Runtime(Settings(target="engine"), extra_plugins=(InlinePlugin(), Typo()))
    with pytest.raises(Exception, match="trine_register_role"):
        await runtime.start()


async def test_a_split_process_serves_only_backend_and_dispatcher_at_engine_addr() -> None:
    """A role of another plugin serving a contract of its own, in a process without the engine:
    engine_addr is the engine's (here: taken by it), and gRPC carries only the two contracts."""

    class Extra(Provider):
        name: ClassVar[str] = "extra"
        serves: ClassVar[frozenset[str]] = frozenset({"extra-contract"})

    class Plugin:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("extra", Extra)

    with socket.socket() as engine:  # the engine process, on the same host
        engine.bind(("127.0.0.1", 0))
        engine.listen()
        engine_addr = f"127.0.0.1:{engine.getsockname()[1]}"
        runtime = Runtime(Settings(target="extra", engine_addr=engine_addr), (Plugin(),))
        await runtime.start()
        try:
            assert runtime.ready()
        finally:
            await runtime.stop()
