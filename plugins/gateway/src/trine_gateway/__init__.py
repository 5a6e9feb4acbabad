"""trine-gateway: the ``gateway`` role, trine's HTTP API (litestar, served by uvicorn).

Endpoints (JSON unless noted; the OpenAPI document is at ``/schema/openapi.json``, Swagger UI at
``/schema``):

- ``POST /v1/runs`` — start a run (``timeout_s`` sets its deadline): 201 created, 200 idempotency
  key reused, 202 ``?wait`` ran out
- ``GET /v1/runs`` — list runs (``status``, ``function``, ``limit``, ``page_token``)
- ``GET /v1/runs/{id}`` — read a run (``?wait=SECONDS`` long-polls until final)
- ``GET /v1/runs/{id}/journal`` — its journal: steps, waits (sleeps, signals, children)
- ``GET /v1/runs/{id}/events`` — its events as server-sent events (``text/event-stream``)
- ``POST /v1/runs/{id}/cancel`` — cancel it: 200 cancelled, 202 cancellation requested (the
  workflow cleans up until ``cancel_deadline``); ``?wait=SECONDS`` waits for the final state
- ``POST /v1/runs/{id}/signals/{name}`` — send it a signal (the body is its JSON payload): 202
- ``GET /v1/functions`` — registered functions
- ``GET /healthz`` — 200 when every role of the process is ready, else 503

Errors are ``{"error": {"code", "message", "details"?}}`` (see :mod:`trine_gateway.errors`).
"""

from trine_gateway.app import create_app
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.plugin import GatewayRole
from trine_gateway.routes import Gateway
from trine_gateway.server import GatewayServer, bind

__all__ = ["Gateway", "GatewayRole", "GatewayServer", "Lifecycle", "bind", "create_app"]
