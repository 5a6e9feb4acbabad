"""TrineError ↔ gRPC status, so a caller sees the same error type in every topology.

The error travels as the status (for generic gRPC tooling) plus a JSON message holding its code,
message and details (for us). A failure to reach the peer at all becomes ``Unavailable``.
"""

from __future__ import annotations

import json

import grpclib
from grpclib.const import Status

from trine_core import TrineError, Unavailable, error_from_code

STATUS_BY_CODE = {
    "invalid_argument": Status.INVALID_ARGUMENT,
    "unknown_function": Status.NOT_FOUND,
    "run_not_found": Status.NOT_FOUND,
    "payload_too_large": Status.RESOURCE_EXHAUSTED,
    "run_finished": Status.FAILED_PRECONDITION,
    "lease_lost": Status.FAILED_PRECONDITION,
    "unavailable": Status.UNAVAILABLE,
}


def to_grpc(exc: TrineError) -> grpclib.GRPCError:
    status = STATUS_BY_CODE.get(exc.code, Status.INTERNAL)
    return grpclib.GRPCError(status, json.dumps(exc.to_dict()))


def from_grpc(exc: grpclib.GRPCError, address: str) -> TrineError:
    try:
        body = json.loads(exc.message or "")
        return error_from_code(body["code"], body["message"], **body.get("details", {}))
    except (ValueError, KeyError, TypeError):
        pass
    if exc.status in (Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.CANCELLED):
        return Unavailable(f"{address}: {exc.status.name.lower()}: {exc.message or ''}".strip())
    return TrineError(f"{address}: {exc.status.name}: {exc.message}")


def unreachable(exc: BaseException, address: str) -> Unavailable:
    return Unavailable(f"cannot reach {address}: {type(exc).__name__}: {exc}")
