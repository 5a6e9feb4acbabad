"""Who is using the console, when the gateway has a tokens file (issue 13).

The console signs in with an API token (``POST /ui/login``) and keeps it in a cookie the page's
scripts cannot read (``HttpOnly``), that no other site's request carries (``SameSite=Strict``),
sent only to the console (``Path=/ui``) and only over HTTPS when the page came over HTTPS
(``Secure``). Every request to the console checks the token again through the gateway's token
book (:class:`~trine_gateway.auth.GatewayAuth`), so a token revoked by editing the file and
``SIGHUP`` signs its sessions out at once. A token needs ``read`` to see pages; without ``write``
the pages show no actions and a posted action answers 403.

Each form carries a CSRF token, the HMAC of the session's token under a secret drawn when the
console starts: a page of another site cannot read it, so it cannot forge a post even where the
browser would send the cookie. It is checked on every post but the login's (which has no session
yet and relies on the same-origin check every form has, :func:`~trine_gateway.ui.routes.
same_origin`). A restart draws a new secret: a form left open from before is refused once.

Without a tokens file there is no session: the console is open, as the API is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect

from trine_core import PermissionDenied, Token, TrineError, Unauthenticated
from trine_core.auth import READ, WRITE
from trine_gateway.auth import GatewayAuth

COOKIE = "trine_console"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf"
PUBLIC = "public"
"""A route handler's ``opt`` key: the login page and form need no session."""
SIGN_OUT = "sign_out"
"""A route handler's ``opt`` key: signing out needs the CSRF token but not ``write``."""
STATE_KEY = "console"
"""Where :func:`viewer` finds the request's :class:`Viewer` (``request.state``)."""


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Who a console page is for. ``name`` is None when the gateway has no tokens file."""

    name: str | None = None
    can_write: bool = True
    csrf: str = ""

    @property
    def signed_in(self) -> bool:
        return self.name is not None


OPEN = Viewer()


def viewer(request: Request[Any, Any, Any] | None) -> Viewer:
    """The request's viewer (for templates: ``viewer(request)``); the open one by default."""
    if request is None:
        return OPEN
    found = request.state.get(STATE_KEY) if hasattr(request, "state") else None
    return found if isinstance(found, Viewer) else OPEN


def auth_of(request: Request[Any, Any, Any]) -> GatewayAuth | None:
    """The gateway's tokens (``app.state.auth``), or None when the console is open."""
    found = request.app.state.get("auth")
    return found if isinstance(found, GatewayAuth) else None


def is_https(request: Request[Any, Any, Any]) -> bool:
    """Whether the browser reached the console over HTTPS (directly, or through a proxy that
    says so): then the cookie is ``Secure``. A forged header only makes the cookie stricter."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/runs"


class Sessions:
    """The console's sessions: the per-process CSRF secret, the check made before every
    console route, and the cookie set at login."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret if secret is not None else secrets.token_bytes(32)

    def csrf(self, token: str) -> str:
        return hmac.new(self.secret, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def sign_in(self, auth: GatewayAuth, token: str) -> Token:
        """The token's entry if it may use the console (``read``); Unauthenticated or
        PermissionDenied (with a message for the login form) otherwise."""
        if not token:
            raise Unauthenticated("enter an API token")
        return auth.authorize(token, READ)

    def set_cookie(
        self, response: Response[Any], request: Request[Any, Any, Any], token: str
    ) -> Response[Any]:
        response.set_cookie(
            COOKIE,
            token,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=is_https(request),
        )
        return response

    @staticmethod
    def clear_cookie(response: Response[Any]) -> Response[Any]:
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    async def before_request(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        """Every console route but the public ones: a page without a valid session goes to the
        login form; a post needs the session's CSRF token, and ``write`` unless it signs out."""
        auth = auth_of(request)
        if auth is None or request.route_handler.opt.get(PUBLIC):
            return None
        token = request.cookies.get(COOKIE) or ""
        try:
            found = auth.authorize(token or None, READ)
        except Unauthenticated:
            if request.method in ("GET", "HEAD"):
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                # media_type: the event stream's route would otherwise lend it text/event-stream
                return Redirect(
                    "/ui/login",
                    query_params={"next": path},
                    status_code=303,
                    media_type=MediaType.TEXT,
                )
            raise
        can_write = found.allows(WRITE)
        request.state[STATE_KEY] = Viewer(found.name, can_write, self.csrf(token))
        if request.method != "POST":
            return None
        form = await request.form()
        sent = str(form.get(CSRF_FIELD) or "")
        if not hmac.compare_digest(sent.encode(), self.csrf(token).encode()):
            raise PermissionDeniedException(
                "the form's CSRF token is missing or stale: reload the page and submit again"
            )
        if not can_write and not request.route_handler.opt.get(SIGN_OUT):
            raise PermissionDenied(f"token {found.name!r} lacks scope 'write': it may only read")
        return None


def sign_in_error(exc: TrineError) -> str:
    """What the login form says for a refused token (never which part was wrong)."""
    if isinstance(exc, PermissionDenied):
        return "this token may not read: the console needs scope 'read'"
    return "not a valid API token"


__all__ = ["COOKIE", "Sessions", "Viewer", "viewer"]
