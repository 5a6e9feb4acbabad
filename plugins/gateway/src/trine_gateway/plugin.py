"""The ``gateway`` role: trine's HTTP API on ``http_addr``, over the ``Backend`` contract."""

from __future__ import annotations

from typing import ClassVar

from trine_core import (
    Backend,
    RoleContext,
    RoleRegistry,
    Setting,
    Settings,
    SettingsRegistry,
    hookimpl,
)
from trine_gateway.app import create_app
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.server import GatewayServer

HTTP_ADDR = Setting("http_addr", "127.0.0.1:7480", "the gateway's HTTP listen address (host:port)")


class GatewayRole:
    name: ClassVar[str] = "gateway"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset({Backend})

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
        )
        server = GatewayServer(app, self.settings[HTTP_ADDR], lifecycle)
        await server.start()
        self._server = server
        context.log.info("gateway listening", url=server.url, openapi=f"{server.url}/schema")

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
    registry.add(HTTP_ADDR)


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(GatewayRole.name, GatewayRole)
