"""Optional needs (``Role.wants``): wired like needs when something provides them, left unwired
when nothing does, and one client per address when ``[connect]`` names several."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar, cast

import pytest
from roles import Greeter, Hello, InlineRoles, Provider, events

from trine_core import (
    TARGET,
    ConfigError,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    SettingsRegistry,
    TransportRegistry,
    hookimpl,
)
from trine_core.runtime import start_order
from trine_core.settings import read_settings

T = TypeVar("T")


class Curious:
    """Greets through every Greeter it is given; does without one."""

    name: ClassVar[str] = "curious"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()
    wants: ClassVar[frozenset[type]] = frozenset({Greeter})
    got: ClassVar[list[list[Greeter]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        events.append("start curious")
        Curious.got.append(context.wanted(Greeter))

    async def stop(self) -> None:
        events.append("stop curious")

    def ready(self) -> bool:
        return True


class Remote:
    def __init__(self, address: str) -> None:
        self.address = address

    async def greet(self, name: str) -> str:
        return f"{self.address} greets {name}"


class FakeTransport:
    """``fake://…``: a client names its address; ``serve`` is recorded."""

    scheme: ClassVar[str] = "fake"
    served: ClassVar[list[str]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def connect(self, contract: type[T], address: str) -> T:
        return cast(T, Remote(address))

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        FakeTransport.served.append(address)

    async def close(self) -> None:
        pass


class Plugin:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("curious", Curious)  # registered first: started after its provider

    @hookimpl
    def trine_register_transports(self, registry: TransportRegistry) -> None:
        registry.add_transport("fake", FakeTransport)


@pytest.fixture(autouse=True)
def _clear_wants() -> None:
    Curious.got.clear()
    FakeTransport.served.clear()


def settings(target: str, **connect: str) -> Settings:
    return Settings({TARGET: target}, connect)


async def boot(target: str, *plugins: object, **connect: str) -> list[Greeter]:
    runtime = Runtime(settings(target, **connect), extra_plugins=(Plugin(), *plugins))
    await runtime.start()
    await runtime.stop()
    [greeters] = Curious.got
    return greeters


async def test_a_want_nothing_provides_is_left_unwired_and_the_role_starts() -> None:
    assert await boot("curious") == []
    assert events == ["start curious", "stop curious"]


async def test_a_want_a_role_of_this_process_serves_gets_its_object_after_it_started() -> None:
    [greeter] = await boot("curious,provider", InlineRoles())
    assert isinstance(greeter, Hello)
    assert events[:2] == ["start provider", "start curious"]


def test_start_order_counts_wants() -> None:
    roles = {"curious": Curious(Settings()), "provider": Provider(Settings())}
    assert start_order(roles) == ["provider", "curious"]  # type: ignore[arg-type]


async def test_a_want_is_dialled_where_its_plugin_says() -> None:
    class Placing:
        @hookimpl
        def trine_contract_address(self, contract: type, settings: Settings) -> str | None:
            return "fake://greeters" if contract is Greeter else None

    [greeter] = await boot("curious", Placing())
    assert await greeter.greet("ada") == "fake://greeters greets ada"


async def test_connect_may_name_several_addresses_for_a_want_one_client_each() -> None:
    greeters = await boot("curious,provider", InlineRoles(), greeter="fake://a, fake://b")
    assert [g.address for g in greeters if isinstance(g, Remote)] == ["fake://a", "fake://b"]
    assert len(greeters) == 2  # [connect] wins over the local provider, as for a need
    assert FakeTransport.served == []  # those are other processes' addresses, not this one's


async def test_one_connect_address_is_still_served_by_the_local_provider() -> None:
    await boot("curious,provider", InlineRoles(), greeter="fake://here")
    assert FakeTransport.served == ["fake://here"]


async def test_a_need_given_several_addresses_is_an_error_naming_the_contract() -> None:
    runtime = Runtime(
        settings("consumer", greeter="fake://a,fake://b"), extra_plugins=(InlineRoles(), Plugin())
    )
    with pytest.raises(ConfigError, match=r"\[connect\] greeter names 2 addresses"):
        await runtime.start()


async def test_a_context_without_the_want_wired_gives_no_provider() -> None:
    context = RoleContext(Settings(), None)  # type: ignore[arg-type]  # as a test builds one
    assert context.wanted(Greeter) == []


def test_a_toml_array_in_connect_is_several_addresses(tmp_path: Path) -> None:
    path = tmp_path / "trine.toml"
    path.write_text('[connect]\nworker_registry = ["grpc://a:1", "grpc://b:2"]\n')
    read = read_settings(SettingsRegistry(), env={}, config_file=path)
    assert read.connect == {"worker_registry": "grpc://a:1,grpc://b:2"}
