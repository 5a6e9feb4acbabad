"""The ``engine`` role: serves ``Backend`` and ``Dispatcher`` from one :class:`Engine`.

Registered through the ``trine.roles`` entry point ``engine = "trine_engine.plugin"``. The plugin
also says where those contracts are served for the other roles of a split deployment:
``grpc://`` + ``engine_addr``.
"""

from __future__ import annotations

from typing import ClassVar

from trine_core import (
    Backend,
    Dispatcher,
    RoleContext,
    RoleRegistry,
    Settings,
    SettingsRegistry,
    hookimpl,
)
from trine_engine.clock import Clock
from trine_engine.engine import Engine
from trine_engine.settings import ENGINE_ADDR, SETTINGS, engine_config


class EngineRole:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[type]] = frozenset({Backend, Dispatcher})
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        """``clock``: the engine's time (the system clock by default; the test kit's
        ``WorkflowEnvironment`` gives a skipping one)."""
        self.settings = settings
        self.clock = clock
        self.engine: Engine | None = None

    async def start(self, context: RoleContext) -> None:
        """Open the database (a StorageError names the data dir's problem in one line) and
        start the timers."""
        engine = self.engine = await Engine.open(
            engine_config(self.settings), context.log, clock=self.clock
        )
        context.provide(Backend, engine.backend)
        context.provide(Dispatcher, engine.dispatcher)

    async def stop(self) -> None:
        """Flush, log the stats, close the database; the data dir can be reopened at once."""
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.close()

    def ready(self) -> bool:
        """Needs no peer: ready while open and its log accepts writes."""
        return self.engine is not None and not self.engine.failed


@hookimpl
def trine_add_settings(registry: SettingsRegistry) -> None:
    registry.add(*SETTINGS)


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(EngineRole.name, EngineRole)


@hookimpl
def trine_contract_address(contract: type, settings: Settings) -> str | None:
    if contract is Backend or contract is Dispatcher:
        return f"grpc://{settings[ENGINE_ADDR]}"
    return None
