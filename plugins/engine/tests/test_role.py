"""The engine role as the runtime sees it: registration, settings, start, provide, stop, where
its contracts are served, boot errors."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

import pytest

from trine_core import (
    TARGET,
    Backend,
    Dispatcher,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    SettingsRegistry,
    StorageError,
    TransportRegistry,
    get_logger,
    hookimpl,
)
from trine_engine.plugin import (
    EngineRole,
    trine_add_settings,
    trine_contract_address,
    trine_register_roles,
)
from trine_engine.settings import DATA_DIR, ENGINE_ADDR
from trine_proto.trine.v1 import FunctionSpec, ListFunctionsRequest, RegisterFunctionsRequest

T = TypeVar("T")


def test_the_plugin_registers_the_engine_role_and_its_settings() -> None:
    roles = RoleRegistry()
    trine_register_roles(registry=roles)
    assert roles.get("engine") is EngineRole
    assert EngineRole.serves == frozenset({Backend, Dispatcher})
    assert EngineRole.needs == frozenset()
    settings = SettingsRegistry()
    trine_add_settings(registry=settings)
    assert {s.key for s in settings} >= {"data_dir", "engine_addr", "engine.cancel_grace_ms"}


def test_its_contracts_are_served_at_engine_addr_for_other_processes() -> None:
    settings = Settings({ENGINE_ADDR: "10.0.0.5:7000"})
    assert trine_contract_address(contract=Backend, settings=settings) == "grpc://10.0.0.5:7000"
    assert trine_contract_address(contract=Dispatcher, settings=settings) == "grpc://10.0.0.5:7000"
    assert trine_contract_address(contract=RoleRegistry, settings=settings) is None


async def test_start_provide_stop_and_start_again(data_dir: Path) -> None:
    settings = Settings({DATA_DIR: data_dir})
    for round_ in range(2):
        role = EngineRole(settings)
        assert not role.ready()
        context = RoleContext(settings, get_logger("engine"))
        await role.start(context)
        assert role.ready()
        backend, dispatcher = context.provided.get(Backend), context.provided.get(Dispatcher)
        assert isinstance(backend, Backend)
        assert isinstance(dispatcher, Dispatcher)
        if round_ == 0:
            await dispatcher.register_functions(
                RegisterFunctionsRequest(functions=[FunctionSpec(name="f")])
            )
        else:  # the second start reopened the same data dir
            listed = await backend.list_functions(ListFunctionsRequest())
            assert [f.name for f in listed.functions] == ["f"]
        await role.stop()
        await role.stop()
        assert not role.ready()


class RecordingTransport:
    """Stands in for the grpc transport: records what the runtime serves where."""

    scheme: ClassVar[str] = "grpc"
    served: ClassVar[list[tuple[type, str]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def connect(self, contract: type[T], address: str) -> T:
        raise AssertionError("the engine needs nothing")

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        self.served.append((contract, address))

    async def close(self) -> None:
        pass


class StandIn:
    @hookimpl
    def trine_register_transports(self, registry: TransportRegistry) -> None:
        registry.add_transport("grpc", RecordingTransport)


async def test_an_engine_process_serves_both_contracts_at_engine_addr(data_dir: Path) -> None:
    settings = Settings({TARGET: "engine", DATA_DIR: data_dir, ENGINE_ADDR: "127.0.0.1:7999"})
    runtime = Runtime(settings, extra_plugins=(StandIn(),))  # the engine from its entry point
    await runtime.start()
    try:
        assert runtime.ready()
        assert isinstance(runtime.roles["engine"], EngineRole)
        assert sorted(RecordingTransport.served, key=lambda s: s[0].__name__) == [
            (Backend, "grpc://127.0.0.1:7999"),
            (Dispatcher, "grpc://127.0.0.1:7999"),
        ]
    finally:
        await runtime.stop()


async def test_a_bad_data_dir_fails_the_boot_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "stuff").write_text("x")
    runtime = Runtime(Settings({TARGET: "engine", DATA_DIR: tmp_path}))
    with pytest.raises(StorageError) as info:
        await runtime.start()
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)
