"""The error types every role raises and every transport carries unchanged.

A gateway maps them to HTTP statuses, the gRPC transport maps them to status codes and back, and
the worker SDK sees their ``code``. Because callers match on ``code`` (a stable string), a message
can be reworded without breaking anyone.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TrineError(Exception):
    """Base of every error trine reports to a user or across a transport."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidArgument(TrineError):
    code = "invalid_argument"
    http_status = 400


class UnknownFunction(TrineError):
    code = "unknown_function"
    http_status = 404


class PayloadTooLarge(TrineError):
    code = "payload_too_large"
    http_status = 413


class RunNotFound(TrineError):
    code = "run_not_found"
    http_status = 404


class RunFinished(TrineError):
    """The run already reached a final state, so it cannot be changed (cancelled, signalled)."""

    code = "run_finished"
    http_status = 409


class LeaseLost(TrineError):
    """A report carried a lease that is no longer current; it changed nothing."""

    code = "lease_lost"
    http_status = 409


class Unavailable(TrineError):
    """A peer role cannot be reached right now; retrying later may succeed."""

    code = "unavailable"
    http_status = 503


class ConfigError(TrineError):
    """Boot cannot go on: a setting, a plugin or the data dir is wrong. Printed as one line."""

    code = "config_error"


class StorageError(TrineError):
    """The database cannot be used as it is (unknown format, corrupt record)."""

    code = "storage_error"


ERRORS_BY_CODE: dict[str, type[TrineError]] = {
    cls.code: cls
    for cls in (
        TrineError,
        InvalidArgument,
        UnknownFunction,
        PayloadTooLarge,
        RunNotFound,
        RunFinished,
        LeaseLost,
        Unavailable,
        ConfigError,
        StorageError,
    )
}


def error_from_code(code: str, message: str, **details: Any) -> TrineError:
    """Rebuild the error a remote peer raised, from its code (what transports do on receipt)."""
    return ERRORS_BY_CODE.get(code, TrineError)(message, **details)
