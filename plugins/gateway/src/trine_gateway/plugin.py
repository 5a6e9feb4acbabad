"""The ``gateway`` role: trine's HTTP API on ``http_addr``, over the ``Backend`` contract; it
wants ``WorkerRegistry`` (every coordinator wired to it) for ``GET /v1/workers``."""

from __future__ import annotations

from typing import ClassVar

from trine_core import (
    Backend,
    RoleContext,
    RoleRegistry,
    Setting,
    Settings,
    SettingsRegistry,
    WorkerRegistry,
    hookimpl,
)
from trine_gateway.app import create_app
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.server import GatewayServer
from trine_gateway.ui import UI

HTTP_ADDR = Setting("http_addr", "127.0.0.1:7480", "the gateway's HTTP listen address (host:port)")


class GatewayRole:
    name: ClassVar[str] = "gateway"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset({Backend})
    wants: ClassVar[frozenset[type]] = frozenset({WorkerRegistry})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: GatewayServer | None = None

    async def start(self, context: RoleContext) -> None:
        lifecycle = Lifecycle()
        # /healthz: every role of this process (this one included) is ready.
        app = create_app(
            context.need(Backend),
            self.settings,
            context.process_ready,
            lifecycle=lifecycle,
            mounts=context.http_apps(),  # the observers' apps: trine-metrics' /metrics
            registries=context.wanted(WorkerRegistry),
        )
        server = GatewayServer(app, self.settings[HTTP_ADDR], lifecycle)
        await server.start()
        self._server = server
        context.log.info("gateway listening", url=server.url, openapi=f"{server.url}/schema")
        if not context.wanted(WorkerRegistry):
            context.log.info("no coordinator is wired to this gateway: GET /v1/workers answers 503")

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (a ``:0`` port resolved); empty until started."""
        return self._server.url if self._server is not None else ""

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    def ready(self) -> bool:
        return self._server is not None and self._server.serving


@hookimpl
def trine_add_settings(registry: SettingsRegistry) -> None:
    registry.add(HTTP_ADDR, UI)


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(GatewayRole.name, GatewayRole)
