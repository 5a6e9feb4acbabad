"""The gateway's instruments (issue 11), in core's process registry; ``trine-metrics`` exports
them (and, through the ``trine_http_apps`` hook, serves ``/metrics`` on the gateway's port).

HTTP requests are timed by :func:`instrument`, an ASGI wrapper around the whole app, so every
answer is counted, a 404 of no route and an error's status included. ``route`` is litestar's
route template (``/v1/runs/{run_id}``), never the raw path, so its values are bounded by the
routes; an unknown method counts as ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from trine_core.instruments import REGISTRY, REQUEST_BUCKETS

SSE_STREAMS = REGISTRY.gauge(
    "trine_sse_streams_open",
    "Run event streams (SSE, GET /v1/runs/{run_id}/events) open on this gateway now.",
)
HTTP_DURATION = REGISTRY.histogram(
    "trine_http_request_duration_seconds",
    "HTTP requests by method, route template and status, from the request to the end of its "
    "response (its wait for a turn of the event loop included): a long-poll (?wait) includes its "
    "wait, an event stream lasts as long as it is held open. route is 'unmatched' for a path no "
    "route serves.",
    ("method", "route", "status"),
    REQUEST_BUCKETS,
)
HTTP_WAITING = REGISTRY.gauge(
    "trine_http_requests_waiting",
    "HTTP requests waiting now for a turn of the event loop to enter the app "
    "([gateway] requests_per_turn), by method: above zero, the gateway gets more requests per "
    "turn than its share.",
    ("method",),
)
HTTP_WAITED = REGISTRY.counter(
    "trine_http_requests_waited_total",
    "HTTP requests that waited for a later turn of the event loop to enter the app "
    "([gateway] requests_per_turn), by method; their wait is in "
    "trine_http_request_duration_seconds.",
    ("method",),
)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


App = Callable[..., Awaitable[None]]


def instrument(app: App) -> App:
    """``app``, timing each HTTP request into :data:`HTTP_DURATION` (other scopes pass)."""

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # no response started: the server answers 500

        async def send_noting_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_noting_status)
        finally:
            HTTP_DURATION.labels(method_label(scope), _route(scope), str(status)).observe(
                time.perf_counter() - started
            )

    return timed


def method_label(scope: Any) -> str:
    """The request's method as a label value: one trine serves, or ``other``."""
    method = scope.get("method", "")
    return method if method in METHODS else "other"


def _route(scope: Any) -> str:
    """The route template litestar matched; a mount's path (litestar sets no template for one);
    or ``unmatched``."""
    template = scope.get("path_template")
    if template:
        return str(template)
    paths = getattr(scope.get("route_handler"), "paths", None)
    return str(min(paths)) if paths else UNMATCHED
