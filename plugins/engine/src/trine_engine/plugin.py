"""The ``engine`` role: serves ``Backend`` and ``Dispatcher`` from one :class:`Engine`.

Registered through the ``trine.roles`` entry point ``engine = "trine_engine.plugin"``. The plugin
also says where those contracts are served for the other roles of a split deployment:
``grpc://`` + ``engine_addr``.

Whoever reaches that port can take and forge work and rewrite functions' settings, so the role
refuses, at boot and in one line, to be served on a non-loopback ``engine_addr`` without mutual
TLS (``[tls] cert``, ``key`` and ``ca``) unless ``--insecure``.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from trine_core import (
    TARGET,
    Backend,
    Dispatcher,
    RoleContext,
    RoleRegistry,
    Settings,
    SettingsRegistry,
    StorageError,
    hookimpl,
    split_host_port,
)
from trine_core.runtime import runs_all
from trine_core.tls import refuse_open_listener, server_context
from trine_engine.clock import Clock
from trine_engine.config import EngineConfig
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
        """Check where it will be served, open the database (a StorageError names the data
        dir's problem in one line) and start the timers."""
        if not runs_all(self.settings[TARGET]):  # served on engine_addr for the other processes
            address = self.settings[ENGINE_ADDR]
            host, _ = split_host_port(address, ENGINE_ADDR.key)
            refuse_open_listener(self.settings, host, address, "engine")
            server_context(self.settings)  # a bad [tls] file: one line now, not after the open
        config = engine_config(self.settings)
        engine = self.engine = await Engine.open(config, context.log, clock=self.clock)
        engine.on_failure(functools.partial(self._exit_later, context, config))
        context.provide(Backend, engine.backend)
        context.provide(Dispatcher, engine.dispatcher)

    def _exit_later(self, context: RoleContext, config: EngineConfig, _: StorageError) -> None:
        """A write failed: serve reads for ``write_failure_exit_s``, then stop the process, so
        that a supervisor restarts it (after a full disk is freed, the restart is what brings
        writes back: RocksDB does not resume by itself)."""
        context.fail(
            f"the engine stopped after a failed write to its data dir {config.data_dir}, or a "
            "record it could not apply (the error is logged above); everything acknowledged is "
            "on disk: fix what the log names (a full or failing disk, say) and restart trine",
            after_s=config.write_failure_exit_s,
        )

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
