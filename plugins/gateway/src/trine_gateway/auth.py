"""Bearer tokens on every route when ``[auth] tokens_file`` is set (issue 13).

One ASGI middleware, applied by the app to every route (the API, ``/schema``, and the apps
mounted through ``trine_http_apps`` such as ``/metrics``), decides each request from
:data:`RULES`: the first rule whose method and path match names the scope it needs. A request
with no token, or one the file does not know, answers 401 ``unauthenticated`` (with
``WWW-Authenticate: Bearer``); a known token without the scope answers 403 ``permission_denied``
naming the scope. Both are the usual JSON error, raised as trine errors for the app's handlers.

``/healthz`` stays open (load balancers probe it). The console under ``/ui`` authenticates with
its own cookie: this middleware lets ``/ui`` through and the console calls :meth:`GatewayAuth.
authorize` itself. Without a tokens file nothing changes: every route is open, as before.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from pathlib import Path

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from trine_core import (
    AUTH_TOKENS_FILE,
    PermissionDenied,
    Settings,
    Token,
    TokenBook,
    Unauthenticated,
    get_logger,
    install_sighup_reload,
)
from trine_core.auth import ADMIN, READ, WRITE

log = get_logger("gateway")

OPEN = ""
"""The scope of a route anyone may call."""
CONSOLE = "console"
"""Routes the console guards itself (a cookie and CSRF protection): let through here."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """Requests with one of ``methods`` (``*``: any) whose path matches ``path`` (``fnmatch``:
    ``*`` is any run of characters, ``/`` included) need ``scope``."""

    methods: frozenset[str]
    path: str
    scope: str

    def matches(self, method: str, path: str) -> bool:
        return ("*" in self.methods or method in self.methods) and fnmatch.fnmatchcase(
            path, self.path
        )


def rule(methods: str, path: str, scope: str) -> Rule:
    return Rule(frozenset(methods.split()), path, scope)


RULES: tuple[Rule, ...] = (
    rule("GET HEAD", "/healthz", OPEN),
    rule("*", "/ui", CONSOLE),
    rule("*", "/ui/*", CONSOLE),
    rule("GET HEAD OPTIONS", "*", READ),  # every read, event streams, /schema, /metrics
    rule("POST", "/v1/runs", WRITE),
    rule("POST", "/v1/runs/*/signals/*", WRITE),
    rule("POST", "/v1/runs/*/cancel", WRITE),
    rule("POST", "/v1/runs/*/retry", WRITE),
    rule("POST", "/v1/runs/*/move", ADMIN),  # an operator's action: it pins a run to a build
)
"""The scope each request needs: the first match wins."""
DEFAULT_SCOPE = ADMIN
"""What a request no rule names needs: a route added without a rule is closed, not open."""


def scope_needed(method: str, path: str) -> str:
    """The scope a ``method`` request to ``path`` needs (:data:`OPEN`, :data:`CONSOLE` or a
    scope name)."""
    method = method.upper()
    return next((r.scope for r in RULES if r.matches(method, path)), DEFAULT_SCOPE)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    kind, _, token = authorization.strip().partition(" ")
    return token.strip() or None if kind.lower() == "bearer" else None


class GatewayAuth:
    """The gateway's tokens (re-read on SIGHUP while the app runs) and the checks made of them."""

    def __init__(self, book: TokenBook) -> None:
        self.book = book
        self._remove_reload: Callable[[], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayAuth | None:
        """The tokens of ``[auth] tokens_file``, or None when it is not set (the API is open).
        A file that cannot be used is a ConfigError: the gateway does not start."""
        path = settings[AUTH_TOKENS_FILE]
        return cls(TokenBook.load(Path(path))) if path else None

    def authorize(self, token: str | None, scope: str) -> Token:
        """The token's entry if it grants ``scope``; :class:`Unauthenticated` for no or an
        unknown token, :class:`PermissionDenied` naming the scope otherwise."""
        found = self.book.check(token)
        if found is None:
            message = (
                "an API token is required: Authorization: Bearer <token> "
                "(trine.Client and the trine CLI send $TRINE_TOKEN)"
            )
            raise Unauthenticated(message if token is None else "the API token is not valid")
        if not found.allows(scope):
            raise PermissionDenied(
                f"token {found.name!r} lacks scope {scope!r}", scope=scope, token=found.name
            )
        return found

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the checks of :data:`RULES` (the app's ``middleware=``)."""

        async def checked(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                needed = scope_needed(scope["method"], scope["path"])
                if needed not in (OPEN, CONSOLE):
                    token = self._token(scope)
                    # who called, for the handlers (the console, logs) to read
                    scope.setdefault("state", {})["trine_token"] = self.authorize(token, needed)
            await app(scope, receive, send)

        return checked

    def _token(self, scope: Scope) -> str | None:
        """The Bearer token of the request's ``Authorization`` header; never a cookie (the
        console's is checked by the console, with its CSRF protection, under ``/ui``)."""
        authorization = next(
            (value for name, value in scope["headers"] if name.lower() == b"authorization"), None
        )
        return bearer(authorization.decode("latin-1")) if authorization is not None else None

    def start_reloading(self) -> None:
        """Re-read the file on SIGHUP (the app's startup: it needs the running loop)."""
        self._remove_reload = install_sighup_reload(self.book, log)

    def stop_reloading(self) -> None:
        remove, self._remove_reload = self._remove_reload, None
        if remove is not None:
            remove()
