"""The ``gateway`` role: trine's HTTP API on ``http_addr``, over the ``backend`` contract."""

from __future__ import annotations

from typing import Any, ClassVar

from trine_core import BACKEND, Backend, RoleContext, RoleRegistry, Settings, hookimpl
from trine_gateway.app import create_app
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.server import GatewayServer


class GatewayRole:
    name: ClassVar[str] = "gateway"
    serves: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[str]] = frozenset({BACKEND})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: GatewayServer | None = None
        self._roles: dict[str, Any] = {}

    async def start(self, context: RoleContext) -> None:
        backend: Backend = context.need(BACKEND)
        self._roles = context.roles
        lifecycle = Lifecycle()
        app = create_app(backend, self.settings, self._all_ready, lifecycle=lifecycle)
        server = GatewayServer(app, self.settings.http_addr, lifecycle)
        await server.start()
        self._server = server
        context.log.info("gateway listening", url=server.url, openapi=f"{server.url}/schema")

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (a ``:0`` port resolved); empty until started."""
        return self._server.url if self._server is not None else ""

    def _all_ready(self) -> bool:
        """``/healthz``: every role of this process (this one included) is ready."""
        return all(role.ready() for role in self._roles.values())

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    def provide(self, kind: str) -> object:
        raise KeyError(f"the gateway role serves no contract ({kind!r} asked)")

    def ready(self) -> bool:
        return self._server is not None and self._server.serving


@hookimpl
def trine_register_roles(registry: RoleRegistry) -> None:
    registry.add_role(GatewayRole.name, GatewayRole)
