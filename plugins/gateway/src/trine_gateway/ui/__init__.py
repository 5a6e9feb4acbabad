"""The web console, served by the gateway at ``/ui``: runs, a run's live timeline, functions,
workers, builds, and forms to start, cancel, signal and retry runs.

Server-rendered (Jinja2 templates through litestar's template engine) and readable without
JavaScript; one small script (``static/console.js``) makes a run's page follow its event stream
(``/ui/runs/{id}/events``, the API's stream under the console's cookie). Every asset ships in
this package: no build step, no CDN. On by default; ``[gateway] ui = false`` (``--gateway-ui
false``, ``TRINE_GATEWAY_UI=false``) turns it off.

Pages answer with a strict ``Content-Security-Policy`` (scripts, styles and connections from the
gateway only, no inline script), and the forms refuse posts from another site. With
``[auth] tokens_file`` the console asks for a token and keeps it in an HTTP-only, same-site
cookie, and every form carries a CSRF token (:mod:`trine_gateway.ui.session`).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from litestar import Router
from litestar.config.app import AppConfig
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.plugins import InitPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from trine_core import Setting, TrineError
from trine_gateway.ui import login, views
from trine_gateway.ui.routes import HANDLERS, html_error
from trine_gateway.ui.session import Sessions, viewer

UI = Setting(
    "ui",
    True,
    "serve the web console at /ui (false: the HTTP API only)",
    section="gateway",
)
HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
ASSET_VERSION = "3"
"""Bumped when a static file changes, so browsers fetch it again (``?v=``)."""

SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value=(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


def environment() -> jinja2.Environment:
    """The templates' environment: autoescaped HTML, with the views' formatting helpers."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset_version"] = ASSET_VERSION
    env.filters["when"] = views.when
    env.filters["iso"] = views.iso
    env.filters["duration"] = views.duration
    env.filters["iso_when"] = views.iso_when
    env.filters["ago"] = views.ago
    env.globals["viewer"] = viewer  # who the page is for: viewer(request).can_write, .csrf
    return env


class ConsolePlugin(InitPlugin):
    """Adds the console's routes, its static files and the template engine to the app."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        sessions = Sessions()  # a CSRF secret of this app's own

        def provide_sessions() -> Sessions:
            return sessions

        pages = Router(
            "/ui",
            route_handlers=[*HANDLERS, *login.HANDLERS],
            include_in_schema=False,
            response_headers=SECURITY_HEADERS,
            exception_handlers={TrineError: html_error, HTTPException: html_error},
            before_request=sessions.before_request,  # the session, its CSRF token, its scopes
            dependencies={"sessions": Provide(provide_sessions, sync_to_thread=False)},
        )
        static = create_static_files_router(
            "/ui/static",
            directories=[STATIC],
            cache_control=CacheControlHeader(max_age=3600),
            include_in_schema=False,
            name="ui:static",
        )
        app_config.route_handlers.extend([pages, static])
        engine = JinjaTemplateEngine.from_environment(environment())
        app_config.template_config = TemplateConfig(instance=engine)
        return app_config


def console(enabled: bool) -> list[InitPlugin]:
    """The litestar plugins that serve the console: none when it is turned off."""
    return [ConsolePlugin()] if enabled else []


__all__ = ["UI", "ConsolePlugin", "console"]
