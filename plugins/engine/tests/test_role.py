"""The engine role as the runtime sees it: registration, start, provide, stop, boot errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from trine_core import (
    Backend,
    Dispatcher,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    StorageError,
    get_logger,
)
from trine_engine import Engine
from trine_engine.plugin import EngineRole, trine_register_roles
from trine_proto.trine.v1 import FunctionSpec, ListFunctionsRequest, RegisterFunctionsRequest


def test_the_plugin_registers_the_engine_role() -> None:
    registry = RoleRegistry()
    trine_register_roles(registry=registry)
    assert registry.get("engine") is EngineRole
    assert EngineRole.serves == frozenset({"backend", "dispatcher"})
    assert EngineRole.needs == frozenset()


async def test_start_provide_stop_and_start_again(settings: Settings) -> None:
    for round_ in range(2):
        role = EngineRole(settings)
        assert not role.ready()
        await role.start(RoleContext(settings=settings, log=get_logger("engine")))
        assert role.ready()
        backend, dispatcher = role.provide("backend"), role.provide("dispatcher")
        assert backend is dispatcher
        assert isinstance(backend, Engine)
        assert isinstance(backend, Backend)
        assert isinstance(dispatcher, Dispatcher)
        with pytest.raises(KeyError):
            role.provide("gateway")
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


async def test_runtime_boots_the_engine_from_its_entry_point(data_dir: Path) -> None:
    runtime = Runtime(Settings(target="engine", data_dir=data_dir))
    await runtime.start()
    try:
        assert runtime.ready()
        assert isinstance(runtime.roles["engine"], EngineRole)
    finally:
        await runtime.stop()


async def test_a_bad_data_dir_fails_the_boot_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "stuff").write_text("x")
    runtime = Runtime(Settings(target="engine", data_dir=tmp_path))
    with pytest.raises(StorageError) as info:
        await runtime.start()
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)
