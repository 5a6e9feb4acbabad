"""The error types every role raises and every transport carries unchanged.

Whoever carries them maps them by ``code`` (the gateway to HTTP statuses, the gRPC transport to
status codes and back), and the worker SDK sees that ``code``. Because callers match on it (a
stable string from :class:`trine_proto.vocabulary.ErrorCode`), a message can be reworded without
breaking anyone.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

from trine_proto.vocabulary import ErrorCode


class TrineError(Exception):
    """Base of every error trine reports to a user or across a transport."""

    code: ClassVar[str] = ErrorCode.INTERNAL

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
    code = ErrorCode.INVALID_ARGUMENT


class UnknownFunction(TrineError):
    code = ErrorCode.UNKNOWN_FUNCTION


class PayloadTooLarge(TrineError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class RunNotFound(TrineError):
    code = ErrorCode.RUN_NOT_FOUND


class RunExpired(TrineError):
    """The run existed but retention deleted it, that long after it ended (HTTP 404; an event
    stream's cursor on it, 410): distinct from an id that never was a run."""

    code = ErrorCode.RUN_EXPIRED


class IdempotencyConflict(TrineError):
    """The idempotency key started a run with a different request (function, input or timeout):
    the client reused a key for a new request (HTTP 422)."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class RunFinished(TrineError):
    """The run already reached a final state, so it cannot be changed (cancelled, signalled)."""

    code = ErrorCode.RUN_FINISHED


class RunNotRetryable(TrineError):
    """A retry of a run that is neither failed (timed out included) nor blocked."""

    code = ErrorCode.RUN_NOT_RETRYABLE


class KeptSignalsFull(TrineError):
    """A signal no wait takes, to a run that already keeps as many signals (or bytes of them)
    as ``[engine] max_kept_signals`` (``max_kept_signal_bytes``) allow (HTTP 409): the request
    is fine, the run's state refuses it until a wait takes some. ``details.limit`` names the
    setting."""

    code = ErrorCode.KEPT_SIGNALS_FULL


class UnknownBuild(TrineError):
    """A build no worker registered the function with (a move of a run to it)."""

    code = ErrorCode.UNKNOWN_BUILD


class LeaseLost(TrineError):
    """A report carried a lease that is no longer current; it changed nothing."""

    code = ErrorCode.LEASE_LOST


class Unavailable(TrineError):
    """A peer role cannot be reached right now; retrying later may succeed."""

    code = ErrorCode.UNAVAILABLE


class ConfigError(TrineError):
    """Boot cannot go on: a setting, a plugin or the data dir is wrong. Printed as one line."""

    code = ErrorCode.CONFIG_ERROR


class StorageError(TrineError):
    """The database cannot be used as it is (unknown format, corrupt record)."""

    code = ErrorCode.STORAGE_ERROR


class RoleFailed(TrineError):
    """A role stopped its process because it cannot go on (the engine after a failed write):
    ``trine`` prints the message as one line and exits with status 1, for a supervisor to
    restart it."""

    code = ErrorCode.UNAVAILABLE


class Unauthenticated(TrineError):
    """No credential, or one no tokens file knows (HTTP 401, gRPC UNAUTHENTICATED): the caller
    must present a valid token; the message never says which part was wrong."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(TrineError):
    """A known credential that lacks what the request needs (HTTP 403, gRPC PERMISSION_DENIED):
    the message names the scope (or function) it would need."""

    code = ErrorCode.PERMISSION_DENIED


class WorkerIdInUse(TrineError):
    """A worker registered a ``worker_id`` that another live worker's session holds (gRPC
    ALREADY_EXISTS on the worker stream): refused rather than fencing the other one."""

    code = ErrorCode.WORKER_ID_IN_USE


ERRORS_BY_CODE: dict[str, type[TrineError]] = {
    cls.code: cls
    for cls in (
        TrineError,
        InvalidArgument,
        UnknownFunction,
        PayloadTooLarge,
        RunNotFound,
        RunExpired,
        IdempotencyConflict,
        RunFinished,
        RunNotRetryable,
        KeptSignalsFull,
        UnknownBuild,
        LeaseLost,
        Unavailable,
        ConfigError,
        StorageError,
        Unauthenticated,
        PermissionDenied,
        WorkerIdInUse,
    )
}


def error_from_code(code: str, message: str, **details: Any) -> TrineError:
    """Rebuild the error a remote peer raised, from its code (what transports do on receipt)."""
    return ERRORS_BY_CODE.get(code, TrineError)(message, **details)


def cannot_listen(what: str, address: str, exc: OSError) -> ConfigError:
    """The one-line boot error for a listener that cannot bind, e.g. ``coordinator: cannot listen
    on 127.0.0.1:7481 for workers: address already in use``."""
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return ConfigError(f"{what}: cannot listen on {address}: {reason}")
