"""``GET /v1/runs/{run_id}/events`` served in front of litestar, for the plain requests.

A held event stream is what a gateway has most of (issue 15: 10,000 at once), and litestar's
routing and request for one (its connection objects, parsed headers and query, the handler's
parameters and middleware chain) cost about 5.6 KB a stream for as long as the stream is held.
:class:`EventsFront` sits between litestar's entry point and its router (it wraps
``Litestar.asgi_handler``) and answers a *plain* request itself, with the very checks, status
line, headers and body the route's handler gives (:class:`trine_gateway.sse.Stream`):

- a ``GET`` of exactly ``/v1/runs/<run_id>/events``;
- a ``Host`` the browser guard allows (:class:`~trine_gateway.browser.BrowserPolicy`), no
  ``Origin`` (so no CORS to answer) and no body;
- with ``[auth] tokens_file``, a Bearer token granting the scope the auth rules name;
- no query, or only ``after=<n>``, and at most one ``Last-Event-ID``: each a decimal integer
  from 0 to 2**32 - 1 written plainly (the header wins over ``after``, as in the route);
- the gateway is not shutting down, and the run exists (the backend's ``get_run`` answers).

Anything else — a bad resume point, a missing token, a foreign Host, an unknown run, a cross-
origin request — is handed to litestar before anything is sent, and the route answers it as it
always did (its 400, 401, 403, 404, 410, 503, its CORS headers); so a refused request may cost
one more ``get_run``, a served one never does. The route stays litestar's too, so the OpenAPI
document lists it unchanged, and ``scope["path_template"]`` is set as litestar's router sets it
(the request metrics' ``route`` label).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from trine_core import TrineError
from trine_gateway.auth import CONSOLE, OPEN, bearer, scope_needed
from trine_gateway.browser import BrowserPolicy
from trine_gateway.sse import START
from trine_proto.trine.v1 import GetRunRequest

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from trine_gateway.auth import GatewayAuth
    from trine_gateway.routes import Gateway

EVENTS_PATH = re.compile(r"/v1/runs/([^/]+)/events")
PATH_TEMPLATE = "/v1/runs/{run_id}/events"
"""What litestar's router puts in ``scope["path_template"]`` for the route."""
SEQ = re.compile(rb"0|[1-9][0-9]{0,9}")
MAX_SEQ = (1 << 32) - 1


def _seq(raw: bytes) -> int | None:
    """A resume point written plainly (``0``, ``17``), in range; None for anything else."""
    if SEQ.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= MAX_SEQ else None


class EventsFront:
    """The ASGI app serving plain event-stream requests, handing every other one to ``app``."""

    __slots__ = ("app", "auth", "gateway", "policy")

    def __init__(
        self, app: ASGIApp, gateway: Gateway, policy: BrowserPolicy, auth: GatewayAuth | None
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.policy = policy
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "GET":
            matched = EVENTS_PATH.fullmatch(scope["path"])
            if matched is not None:
                after_seq = self._plain(scope)
                if after_seq is not None and await self._exists(matched.group(1)):
                    scope["path_template"] = PATH_TEMPLATE
                    await send(START.copy())  # type: ignore[arg-type]
                    stream = self.gateway.stream(matched.group(1), after_seq)
                    await stream.send_body(send, receive)
                    return
        await self.app(scope, receive, send)

    def _plain(self, scope: Scope) -> int | None:
        """The resume point of a request this front may serve; None: litestar answers it."""
        host = authorization = last_event_id = None
        repeated = False
        for name, value in scope["headers"]:
            name = name.lower()
            if name == b"host":
                host = value
            elif name == b"last-event-id":
                repeated = last_event_id is not None
                last_event_id = value
            elif name == b"authorization":
                authorization = value
            elif name == b"origin" or name == b"transfer-encoding":
                return None  # CORS, or a body: the browser guard's business
            elif name == b"content-length" and value.strip() not in (b"", b"0"):
                return None
        if repeated:
            return None
        if not self.policy.host_allowed((host or b"").decode("latin-1")):
            return None
        if self.auth is not None:
            needed = scope_needed("GET", scope["path"])
            if needed == CONSOLE:  # the console's own guard (a cookie): litestar's business
                return None
            if needed != OPEN:
                token = bearer(authorization.decode("latin-1")) if authorization else None
                try:
                    self.auth.authorize(token, needed)
                except TrineError:
                    return None
        after = 0
        query: bytes = scope.get("query_string", b"")
        if query:
            key, _, value = query.partition(b"=")
            if key != b"after" or b"&" in value:
                return None
            parsed = _seq(value)
            if parsed is None:
                return None
            after = parsed
        if last_event_id is not None:
            return _seq(last_event_id)
        return after

    async def _exists(self, run_id: str) -> bool:
        """Whether the run can be streamed now (the route's 404, 410 and 503 otherwise)."""
        if self.gateway.lifecycle.closing:
            return False
        try:
            await self.gateway.backend.get_run(GetRunRequest(run_id=run_id))
        except Exception:
            return False  # litestar asks again and answers the error as the route does
        return not self.gateway.lifecycle.closing
