"""The ``gateway`` role: trine's HTTP API on ``http_addr``, over the ``Backend`` contract; it
wants ``WorkerRegistry`` (every coordinator wired to it) for ``GET /v1/workers``."""

from __future__ import annotations

from typing import ClassVar

from trine_core import (
    AUTH_TOKENS_FILE,
    INSECURE,
    Backend,
    RoleContext,
    RoleRegistry,
    Settings,
    SettingsRegistry,
    WorkerRegistry,
    hookimpl,
)
from trine_gateway.app import create_app
from trine_gateway.browser import check_listen_address
from trine_gateway.connections import HttpLimits
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.server import HTTPS, GatewayServer, https_files
from trine_gateway.settings import (
    ALLOWED_HOSTS,
    CORS_ORIGINS,
    HTTP_ADDR,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    READ_TIMEOUT_S,
    REQUESTS_PER_TURN,
)
from trine_gateway.ui import UI


class GatewayRole:
    name: ClassVar[str] = "gateway"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset({Backend})
    wants: ClassVar[frozenset[type]] = frozenset({WorkerRegistry})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: GatewayServer | None = None

    async def start(self, context: RoleContext) -> None:
        address = self.settings[HTTP_ADDR]
        tokens = self.settings[AUTH_TOKENS_FILE]
        if check_listen_address(address, tokens, self.settings[INSECURE]):
            context.log.warning(
                "the gateway serves the network without tokens (insecure)", http_addr=address
            )
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
        limits = HttpLimits.from_settings(self.settings)
        server = GatewayServer(
            app, address, lifecycle, tls=https_files(self.settings), limits=limits
        )
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
    registry.add(HTTP_ADDR, UI, ALLOWED_HOSTS, CORS_ORIGINS, HTTPS)
    registry.add(MAX_HEADER_BYTES, READ_TIMEOUT_S, IDLE_TIMEOUT_S, MAX_CONNECTIONS, MAX_JSON_DEPTH)
    registry.add(REQUESTS_PER_TURN)


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(GatewayRole.name, GatewayRole)


__all__ = ["HTTP_ADDR", "GatewayRole", "trine_add_settings", "trine_register_roles"]
