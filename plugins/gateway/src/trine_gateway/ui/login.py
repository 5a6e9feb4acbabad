"""Signing in to the console and out of it (``/ui/login``, ``/ui/logout``): see
:mod:`trine_gateway.ui.session` for the cookie and the CSRF token. Without a tokens file there is
nothing to sign in to, and the login page sends the browser to the runs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from trine_core import TrineError
from trine_gateway.errors import http_status
from trine_gateway.ui.routes import same_origin
from trine_gateway.ui.session import (
    PUBLIC,
    SIGN_OUT,
    Sessions,
    auth_of,
    safe_next,
    sign_in_error,
)

MAX_TOKEN_CHARS = 512
"""Longer is not a token (``trine_`` + 43): refused before hashing whatever was pasted."""


def _login_page(target: str, error: str = "", status: int = 200) -> Template:
    context = {"next": target, "error": error}
    return Template(template_name="login.html", context=context, status_code=status)


@get("/login", name="ui:login", opt={PUBLIC: True})
async def login_page(
    request: Request[Any, Any, Any],
    next_page: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Response[Any]:
    if auth_of(request) is None:
        return Redirect("/ui/runs")
    return _login_page(safe_next(next_page))


@post("/login", name="ui:sign-in", guards=[same_origin], opt={PUBLIC: True}, status_code=303)
async def login_form(
    request: Request[Any, Any, Any], sessions: NamedDependency[Sessions]
) -> Response[Any]:
    """A valid token with ``read`` sets the session cookie and goes on to ``next``; anything
    else shows the form again with the status the API would answer (401, 403)."""
    form = await request.form()
    target = safe_next(str(form.get("next") or ""))
    auth = auth_of(request)
    if auth is None:
        return Redirect(target, status_code=303)
    token = str(form.get("token") or "").strip()[: MAX_TOKEN_CHARS + 1]
    try:
        if len(token) > MAX_TOKEN_CHARS:
            token = ""
        sessions.sign_in(auth, token)
    except TrineError as exc:
        return _login_page(target, sign_in_error(exc), http_status(exc))
    return sessions.set_cookie(Redirect(target, status_code=303), request, token)


@post("/logout", name="ui:sign-out", guards=[same_origin], opt={SIGN_OUT: True}, status_code=303)
async def logout_form() -> Response[Any]:
    """Clears the cookie (the session's CSRF token is checked first, as on every post)."""
    return Sessions.clear_cookie(Redirect("/ui/login", status_code=303))


HANDLERS: list[Any] = [login_page, login_form, logout_form]
