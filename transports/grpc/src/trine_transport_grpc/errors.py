"""TrineError ↔ gRPC status, so a caller sees the same error type in every topology.

The error travels as the status (for generic gRPC tooling) plus a JSON message holding its code,
message and details (for us). A failure to reach the peer at all becomes ``Unavailable``.
"""

from __future__ import annotations

import json

import grpclib
from grpclib.const import Status

from trine_core import PermissionDenied, TrineError, Unauthenticated, Unavailable, error_from_code
from trine_proto.vocabulary import ErrorCode

STATUS_BY_CODE: dict[str, Status] = {
    ErrorCode.INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_FUNCTION: Status.NOT_FOUND,
    ErrorCode.RUN_NOT_FOUND: Status.NOT_FOUND,
    ErrorCode.IDEMPOTENCY_CONFLICT: Status.ALREADY_EXISTS,
    ErrorCode.RUN_EXPIRED: Status.NOT_FOUND,
    ErrorCode.PAYLOAD_TOO_LARGE: Status.RESOURCE_EXHAUSTED,
    ErrorCode.RUN_FINISHED: Status.FAILED_PRECONDITION,
    ErrorCode.RUN_NOT_RETRYABLE: Status.FAILED_PRECONDITION,
    ErrorCode.KEPT_SIGNALS_FULL: Status.FAILED_PRECONDITION,
    ErrorCode.UNKNOWN_BUILD: Status.FAILED_PRECONDITION,
    ErrorCode.LEASE_LOST: Status.FAILED_PRECONDITION,
    ErrorCode.UNAVAILABLE: Status.UNAVAILABLE,
    ErrorCode.UNAUTHENTICATED: Status.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: Status.PERMISSION_DENIED,
    ErrorCode.WORKER_ID_IN_USE: Status.ALREADY_EXISTS,
}
"""The gRPC status an error travels with, by its code; any other code travels as ``INTERNAL``."""


def to_grpc(exc: TrineError) -> grpclib.GRPCError:
    status = STATUS_BY_CODE.get(exc.code, Status.INTERNAL)
    return grpclib.GRPCError(status, json.dumps(exc.to_dict()))


def from_json(text: str, address: str) -> TrineError:
    """The TrineError of a JSON body as :func:`to_grpc` writes it (a ``StartRuns`` answer's
    ``error`` carries the same)."""
    try:
        body = json.loads(text)
        return error_from_code(body["code"], body["message"], **body.get("details", {}))
    except (ValueError, KeyError, TypeError):
        return TrineError(f"{address}: {text}")


def from_grpc(exc: grpclib.GRPCError, address: str) -> TrineError:
    try:
        body = json.loads(exc.message or "")
        return error_from_code(body["code"], body["message"], **body.get("details", {}))
    except (ValueError, KeyError, TypeError):
        pass
    # A peer that refuses a credential before our handlers run (an interceptor, a proxy) sends a
    # bare status: it still means the same error to the caller.
    if exc.status is Status.UNAUTHENTICATED:
        return Unauthenticated(f"{address}: {exc.message or 'unauthenticated'}")
    if exc.status is Status.PERMISSION_DENIED:
        return PermissionDenied(f"{address}: {exc.message or 'permission denied'}")
    if exc.status in (Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.CANCELLED):
        return Unavailable(f"{address}: {exc.status.name.lower()}: {exc.message or ''}".strip())
    return TrineError(f"{address}: {exc.status.name}: {exc.message}")


def unreachable(exc: BaseException, address: str) -> Unavailable:
    return Unavailable(f"cannot reach {address}: {type(exc).__name__}: {exc}")
