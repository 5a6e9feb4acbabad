"""The ``engine`` role: serves ``backend`` and ``dispatcher`` from one :class:`Engine`.

Registered through the ``trine.roles`` entry point ``engine = "trine_engine.plugin"``.
"""

from __future__ import annotations

from typing import ClassVar

from trine_core import BACKEND, DISPATCHER, RoleContext, RoleRegistry, Settings, hookimpl
from trine_engine.config import EngineConfig
from trine_engine.engine import Engine


class EngineRole:
    name: ClassVar[str] = "engine"
    serves: ClassVar[frozenset[str]] = frozenset({BACKEND, DISPATCHER})
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None

    async def start(self, context: RoleContext) -> None:
        """Open the database (a StorageError names the data dir's problem in one line) and
        start the timers."""
        self.engine = await Engine.open(engine_config(self.settings), context.log)

    async def stop(self) -> None:
        """Flush, log the stats, close the database; the data dir can be reopened at once."""
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.close()

    def provide(self, kind: str) -> object:
        if kind not in self.serves:
            raise KeyError(f"the engine role does not serve {kind!r}")
        if self.engine is None:
            raise RuntimeError("the engine role is not started")
        return self.engine

    def ready(self) -> bool:
        """Needs no peer: ready while open and its log accepts writes."""
        return self.engine is not None and not self.engine.failed


def engine_config(settings: Settings) -> EngineConfig:
    section = settings.section("engine")
    tuned = {k: int(section[k]) for k in ("finished_cache_size", "cancel_grace_ms") if k in section}
    return EngineConfig(
        data_dir=settings.data_dir,
        max_payload_bytes=settings.max_payload_bytes,
        lease_ttl_ms=settings.lease_ttl_ms,
        **tuned,
    )


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(EngineRole.name, EngineRole)
