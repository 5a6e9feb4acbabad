"""Who may hold a worker session: the worker's token, the functions it may serve, its id.

Issue 13: any process reaching the worker port could register ``order``, take its runs (inputs
included) and rewrite its settings for everyone; two workers with one ``worker_id`` fenced each
other a dozen times a second. With ``[auth] tokens_file`` a worker presents a token with scope
``worker`` (``authorization: Bearer <token>`` metadata on its stream) and registers only functions
the token may serve; a refusal registers nothing, so a function's settings change only through a
registration allowed to serve it. Without a tokens file every worker is admitted, as before.

A ``worker_id`` is one live session: a second process registering an id a live session holds is
refused (``WorkerIdInUse``; gRPC ``ALREADY_EXISTS``) rather than fencing it, so two processes
never take turns. The same process reconnecting (the SDK sends a random
``trine-worker-instance`` per ``Worker``) replaces its old session at once; so does anyone when
the old session has been silent for three heartbeat intervals (a crashed host whose TCP
connection has not closed yet: the new one need not wait for the five intervals that drop it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from trine_core import PermissionDenied, TrineError, Unauthenticated, WorkerIdInUse
from trine_core.auth import WORKER, Token, TokenBook

AUTHORIZATION = "authorization"
INSTANCE = "trine-worker-instance"
"""Metadata naming one ``Worker`` object of one process (random; never shown): a registration
with the instance of a live session is that worker reconnecting, not another worker."""
SILENT_INTERVALS = 3
"""A session silent this many heartbeat intervals yields its ``worker_id`` to a new registration
(it is dropped after five anyway)."""
NEEDS_TOKEN = (
    "this coordinator needs a worker token: set TRINE_TOKEN (or Worker(token=...)) to a token "
    "with scope 'worker' from its tokens file ([auth] tokens_file)"
)


@dataclasses.dataclass(frozen=True)
class Credential:
    """What a worker's stream was admitted with.

    ``secret`` is the token as presented, kept only in memory to check it again after a reload
    of the tokens file (never logged nor shown).
    """

    token: Token
    secret: str = dataclasses.field(repr=False)

    @property
    def name(self) -> str:
        return self.token.name


def authenticate(book: TokenBook | None, metadata: Mapping[str, object]) -> Credential | None:
    """The credential of a stream with this ``metadata`` (None: no tokens file, anyone may
    connect); raises ``Unauthenticated`` or ``PermissionDenied`` saying why and what to do."""
    if book is None:
        return None
    secret = bearer(metadata.get(AUTHORIZATION))
    if not secret:
        raise Unauthenticated(f"{NEEDS_TOKEN}; none was sent")
    token = book.check(secret)
    if token is None:
        raise Unauthenticated(f"{NEEDS_TOKEN}; the token sent is not in it (revoked?)")
    if not token.allows(WORKER):
        raise PermissionDenied(lacks_worker_scope(token))
    return Credential(token, secret)


def admit_functions(credential: Credential | None, functions: Iterable[str]) -> None:
    """Refuse (``PermissionDenied``, naming them and the token) a registration listing functions
    its token may not serve; nothing of it is registered."""
    if credential is None:
        return
    refused = forbidden(credential.token, functions)
    if refused:
        raise PermissionDenied(may_not_serve(credential.token, refused))


def recheck(
    book: TokenBook | None, credential: Credential | None, functions: Iterable[str]
) -> TrineError | None:
    """Why a session admitted with ``credential`` may no longer be held, now that the tokens
    file was reloaded (what its stream ends with), or None if it still may."""
    if book is None or credential is None:
        return None
    token = book.check(credential.secret)
    if token is None:
        return Unauthenticated(
            f"token {credential.name!r} was revoked (it is no longer in the tokens file)"
        )
    if not token.allows(WORKER):
        return PermissionDenied(lacks_worker_scope(token))
    refused = forbidden(token, functions)
    if refused:
        return PermissionDenied(may_not_serve(token, refused))
    return None


def duplicate(worker_id: str, session_id: str) -> WorkerIdInUse:
    """The refusal of a second live worker with one id (the same words at each retry while the
    same session holds it, so the worker logs it once)."""
    return WorkerIdInUse(
        f"worker_id {worker_id!r} is held by another live worker (session {session_id}): give "
        "each worker its own worker_id, or leave it unset (the default is unique per process)",
    )


def bearer(value: object) -> str:
    """The token of an ``authorization: Bearer <token>`` value ("" for anything else)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return ""
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def forbidden(token: Token, functions: Iterable[str]) -> list[str]:
    return sorted({name for name in functions if not token.may_serve(name)})


def lacks_worker_scope(token: Token) -> str:
    scopes = ", ".join(sorted(token.scopes)) or "none"
    return (
        f"token {token.name!r} lacks scope 'worker' (it has: {scopes}): a worker needs a token "
        "with scope 'worker'"
    )


def may_not_serve(token: Token, functions: list[str]) -> str:
    allowed = ", ".join(sorted(token.functions or ())) or "none"
    return (
        f"token {token.name!r} may not serve {', '.join(functions)} (it may serve: {allowed}); "
        "the whole registration is refused: give this worker a token whose 'functions' include "
        "them, or register only those"
    )
