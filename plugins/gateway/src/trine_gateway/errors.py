"""Every failure becomes ``{"error": {"code", "message", "details"?}}`` with a fitting status.

- a :class:`~trine_core.errors.TrineError` from the backend: its ``code`` and ``details`` as
  they are (``unknown_function`` carries ``details.known``), with the status its code maps to in
  :data:`HTTP_STATUS` (500 for any other code);
- litestar's own errors: a body that is not JSON → 400 ``malformed_json``; a body or query value
  of the wrong type or missing → 400 ``invalid_request`` with litestar's ``details.errors``; a body
  over the request size limit → 413 ``payload_too_large``; no such route → 404 ``not_found``;
  a method the route does not have → 405 ``method_not_allowed``;
- anything else → 500 ``internal``, logged with its traceback, which never reaches the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from trine_core import TrineError, get_logger
from trine_proto.vocabulary import ErrorCode

log = get_logger("gateway")
REALM = 'Bearer realm="trine"'
"""The ``WWW-Authenticate`` of a 401: a Bearer token (an API token) is what the gateway takes."""

HTTP_STATUS: Mapping[str, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNKNOWN_FUNCTION: 404,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.IDEMPOTENCY_CONFLICT: 422,  # the key started a run with another request
    ErrorCode.RUN_EXPIRED: 404,  # retention deleted it; 410 for an event stream (trine_error)
    ErrorCode.RUN_FINISHED: 409,
    ErrorCode.RUN_NOT_RETRYABLE: 409,
    ErrorCode.KEPT_SIGNALS_FULL: 409,  # the run keeps as many signals as it may
    ErrorCode.UNKNOWN_BUILD: 409,
    ErrorCode.LEASE_LOST: 409,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.STORAGE_ERROR: 503,  # damaged or failing storage: the message is generic
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
}
"""The HTTP status of a :class:`~trine_core.errors.TrineError`, by its code; any other is 500.
HTTP is the gateway's business: the errors themselves know only their code."""

CLIENT_GONE = "client disconnected prematurely"
"""litestar's words (``litestar/connection/request.py``) when the client closes its connection
before the body it announced has all come: an ``InternalServerException``, which is no fault of
the server's."""
CLIENT_CLOSED_REQUEST = 499
"""The status such a request is recorded with (in the metrics; nobody reads the answer), as
nginx does: not a 5xx, which an operator's alert on server errors would count."""

_CODES_BY_STATUS: Mapping[int, str] = {
    400: "invalid_request",
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: "not_found",
    405: "method_not_allowed",
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: "too_many_requests",
    503: ErrorCode.UNAVAILABLE,
}


def http_status(exc: TrineError) -> int:
    """The HTTP status a trine error answers with."""
    return HTTP_STATUS.get(exc.code, 500)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[dict[str, Any]]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = dict(details)
    return Response(
        {"error": error},
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers) if headers else None,
    )


def _describe(request: Request[Any, Any, Any]) -> str:
    return f"{request.method} {request.url.path}"


def _problem(item: Mapping[str, Any]) -> str:
    """One of litestar's validation errors in a sentence: ``function: Expected `str`…``."""
    key = item.get("key")
    if not key:
        return str(item["message"])
    if key == "data" and item["message"] == "'data'":  # litestar's KeyError: no body at all
        return "body: missing (send a JSON object, Content-Type: application/json)"
    # the body as a whole is litestar's "data" parameter
    return f"{'body' if key == 'data' else key}: {item['message']}"


def exception_handlers(max_body_bytes: int) -> ExceptionHandlersMap:
    """The app's handlers; ``max_body_bytes`` is the request size limit, named in the 413."""

    def trine_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, TrineError)
        status = http_status(exc)
        if exc.code == ErrorCode.RUN_EXPIRED and request.url.path.endswith("/events"):
            status = 410  # ARCHITECTURE §5: a cursor older than what is retained is Gone
        if status >= 500:
            log.error(
                "request failed", request=_describe(request), code=exc.code, error=exc.message
            )
        # RFC 6750: a 401 says which scheme would do
        headers = {"WWW-Authenticate": REALM} if status == 401 else None
        return error_response(status, exc.code, exc.message, exc.details, headers)

    def http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, HTTPException)
        headers = exc.headers or None
        if isinstance(exc, ValidationException):
            errors = exc.extra if isinstance(exc.extra, list) else []
            problems = "; ".join(
                _problem(item) for item in errors if isinstance(item, dict) and "message" in item
            )
            message = f"invalid request: {problems}" if problems else str(exc.detail)
            details = {"errors": errors} if errors else None
            return error_response(400, "invalid_request", message, details)
        if isinstance(exc.__cause__, SerializationException):
            return error_response(
                400, "malformed_json", f"request body is not valid JSON: {exc.detail}"
            )
        if isinstance(exc, RequestEntityTooLarge):
            message = f"request body is larger than {max_body_bytes} bytes"
            return error_response(
                413, ErrorCode.PAYLOAD_TOO_LARGE, message, {"limit": max_body_bytes}
            )
        if isinstance(exc, NotFoundException):
            return error_response(404, "not_found", f"no route for {_describe(request)}")
        if isinstance(exc, MethodNotAllowedException):
            message = f"method {request.method} is not allowed on {request.url.path}"
            return error_response(405, "method_not_allowed", message, headers=headers)
        if isinstance(exc, InternalServerException) and exc.detail == CLIENT_GONE:
            log.info("client closed its connection mid-request", request=_describe(request))
            message = "the client closed its connection before sending its whole request"
            return error_response(CLIENT_CLOSED_REQUEST, "client_closed_request", message)
        status = exc.status_code
        if status >= 500:
            log.error("request failed", request=_describe(request), status=status, error=exc.detail)
            return error_response(status, ErrorCode.INTERNAL, "internal error", headers=headers)
        code = _CODES_BY_STATUS.get(status, "invalid_request")
        return error_response(status, code, str(exc.detail), headers=headers)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        log.error("request failed", request=_describe(request), exc_info=exc)
        return error_response(500, ErrorCode.INTERNAL, "internal error")

    return {TrineError: trine_error, HTTPException: http_error, Exception: unexpected}
