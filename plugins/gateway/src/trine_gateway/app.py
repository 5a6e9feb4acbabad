"""The litestar application: the routes of :mod:`trine_gateway.routes` over one ``Backend``.

The OpenAPI document is served at ``/schema/openapi.json`` (Swagger UI at ``/schema``).
Request bodies are capped at ``max_payload_bytes`` + 64 KiB: only a guard against huge bodies,
since the engine checks the input bytes themselves against ``max_payload_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar, asgi
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

from trine_core import MAX_PAYLOAD_BYTES, Backend, ConfigError, Settings, WorkerRegistry
from trine_core.hookspecs import ASGIApp
from trine_gateway.auth import GatewayAuth
from trine_gateway.browser import BrowserPolicy, browser_guard
from trine_gateway.errors import exception_handlers
from trine_gateway.events_front import EventsFront
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.routes import HANDLERS, Gateway
from trine_gateway.settings import MAX_JSON_DEPTH
from trine_gateway.ui import UI, console

VERSION = "0.1.0"
BODY_SLACK_BYTES = 64 * 1024
"""Room for the JSON around the input (``{"function": …, "input": …}``) and its escaping."""
SCHEMA_PATH = "/schema"


def create_app(
    backend: Backend,
    settings: Settings,
    ready: Callable[[], bool],
    *,
    lifecycle: Lifecycle | None = None,
    keepalive_s: float = 15.0,
    mounts: Mapping[str, ASGIApp] | None = None,
    registries: Sequence[WorkerRegistry] = (),
) -> Litestar:
    """The gateway's ASGI app. ``ready`` answers ``/healthz``; ``lifecycle`` (a new one by default)
    is what a server closes on shutdown to end long-polls and event streams; ``registries``: the
    coordinators whose workers ``/v1/workers`` lists (none: it answers 503)."""
    gateway = Gateway(
        backend=backend,
        ready=ready,
        lifecycle=lifecycle if lifecycle is not None else Lifecycle(),
        keepalive_s=keepalive_s,
        registries=tuple(registries),
    )
    max_body = settings[MAX_PAYLOAD_BYTES] + BODY_SLACK_BYTES
    max_json_depth = settings[MAX_JSON_DEPTH]
    if max_json_depth <= 0:
        raise ConfigError(f"{MAX_JSON_DEPTH.key}: must be positive, got {max_json_depth}")
    # [auth] tokens_file: every route but /healthz (and /ui, the console's) needs a token, read
    # here so a bad file stops the boot; SIGHUP re-reads it while the app runs.
    auth = GatewayAuth.from_settings(settings)

    def provide_gateway() -> Gateway:
        return gateway

    app = Litestar(
        route_handlers=[*HANDLERS, *(_mount(path, app) for path, app in (mounts or {}).items())],
        dependencies={"gateway": Provide(provide_gateway, use_cache=True, sync_to_thread=False)},
        exception_handlers=exception_handlers(max_body),
        # Host, Content-Type, Origin, CORS first; then the token (when a tokens file is set)
        middleware=[browser_guard(settings), *([auth.middleware] if auth is not None else [])],
        request_max_body_size=max_body,
        plugins=console(settings[UI]),  # the web console at /ui
        on_startup=[auth.start_reloading] if auth is not None else [],
        on_shutdown=[auth.stop_reloading] if auth is not None else [],
        openapi_config=OpenAPIConfig(
            title="trine",
            version=VERSION,
            description="Start durable runs, read them, follow their events.",
            path=SCHEMA_PATH,
            render_plugins=[SwaggerRenderPlugin(path=["/", "/swagger"]), JsonRenderPlugin()],
            **_bearer_scheme(auth),
        ),
        # trine logs with structlog; litestar's default config would reconfigure stdlib logging
        logging_config=None,
        debug=False,
    )
    # Plain event-stream requests are served before litestar's router (issue 15: what a held
    # stream costs); every other request, and every refusal, is litestar's as before.
    app.asgi_handler = EventsFront(
        app.asgi_handler, gateway, BrowserPolicy.from_settings(settings), auth
    )
    app.state.auth = auth  # the console checks its cookie's token through it (None: open)
    app.state.max_json_depth = max_json_depth  # what JsonRequest refuses a body beyond
    return app


def _bearer_scheme(auth: GatewayAuth | None) -> dict[str, Any]:
    """With tokens, the OpenAPI document says every operation takes a Bearer token."""
    if auth is None:
        return {}
    scheme = SecurityScheme(type="http", scheme="bearer", description="an API token: trine_…")
    security: list[SecurityRequirement] = [{"bearer": []}]
    return {"components": Components(security_schemes={"bearer": scheme}), "security": security}


def _mount(path: str, app: ASGIApp) -> Any:
    """A route handing every request at ``path`` and below to ``app`` (an observer's, from
    ``trine_http_apps``: ``/metrics``), outside the OpenAPI document."""

    @asgi(path, is_mount=True, copy_scope=True, include_in_schema=False)
    async def mounted(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)

    return mounted
