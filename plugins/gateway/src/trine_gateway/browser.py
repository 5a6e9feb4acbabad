"""Browser-safe defaults: what keeps a web page open on the gateway's host from driving trine.

Issue 13 found that any page could start runs (a ``text/plain`` POST needs no CORS preflight) and,
through DNS rebinding, read them (any ``Host`` was answered). A browser sends three things a page
cannot forge, and the gateway checks each before a route runs:

- ``Host``: one of the gateway's own names — loopback names (``localhost``, ``127.0.0.1``,
  ``[::1]``, any port), the host of ``http_addr`` unless it is a wildcard, and
  ``[gateway] allowed_hosts`` — or 400 ``invalid_host``. A rebinding page's requests carry its
  own domain. ``/healthz`` is exempt: probes address the gateway by IP, and it tells nothing.
- ``Content-Type`` of a request with a body: ``application/json``, or 415
  ``unsupported_media_type``. The three types a page may post without a preflight
  (``text/plain``, forms, multipart) are thereby refused. A ``Content-Encoding`` other than
  ``identity`` is refused the same way: nothing here decompresses a body.
- ``Origin`` of a state-changing request (POST, PUT, PATCH, DELETE): the gateway's own (the
  ``Host``, or ``X-Forwarded-Host`` behind a proxy) or one of ``[gateway] cors_origins``, or 403
  ``forbidden_origin``. Clients that are not browsers send no ``Origin`` and pass.

CORS is off unless ``[gateway] cors_origins`` lists origins: then those, and only those, get CORS
headers, and their preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered
here, before any token check, since a browser never sends credentials on a preflight. Any other
preflight is refused with 403.

The console's pages and forms (``/ui``) post HTML forms and check their origin themselves
(:mod:`trine_gateway.ui`), so only the ``Host`` check applies to them.

:func:`check_listen_address` is the other half of the defaults: a gateway reachable from the
network without tokens is refused at boot unless ``insecure`` says that is meant.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from trine_core import ConfigError, Settings, TrineError, split_host_port
from trine_core.tls import is_loopback
from trine_gateway.errors import REALM, http_status
from trine_gateway.settings import ALLOWED_HOSTS, CORS_ORIGINS, HTTP_ADDR

INVALID_HOST = "invalid_host"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
FORBIDDEN_ORIGIN = "forbidden_origin"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE = "application/json"
EXEMPT_FROM_HOST = frozenset({"/healthz"})
"""Paths answered whatever the Host: a liveness probe addresses the gateway by its IP."""
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"
"""The request headers the API reads: the token, the body's type, and an event stream's resume."""
CORS_MAX_AGE_S = 600


def split_host(value: str) -> tuple[str, str]:
    """A ``Host`` header (or an ``allowed_hosts`` entry) as ``(name, port)``: lower case, no
    trailing dot, an IPv6 address kept in brackets; ``port`` is ``""`` when absent."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, ""
        name, rest = value[: end + 1], value[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else ""
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name.rstrip("."), port
    if value.count(":") > 1:  # a bare IPv6 address, as in an allowed_hosts entry
        return f"[{value}]", ""
    return value.rstrip("."), ""


def origin_authority(origin: str) -> str:
    """``https://example.com:8443`` → ``example.com:8443`` (lower case); ``""`` for ``null``."""
    _, sep, rest = origin.strip().lower().partition("://")
    return rest.rstrip("/") if sep else ""


@dataclasses.dataclass(frozen=True)
class HostRule:
    """One allowed name: ``name`` (``*.domain`` matches its subdomains) on ``port`` (any if
    empty)."""

    name: str
    port: str = ""

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        return cls(*split_host(entry))

    def matches(self, name: str, port: str) -> bool:
        if self.port and self.port != port:
            return False
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


@dataclasses.dataclass(frozen=True)
class BrowserPolicy:
    """The names the gateway answers to and the origins allowed to call it from a page."""

    hosts: tuple[HostRule, ...]
    any_host: bool = False
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, http_addr: str, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()
    ) -> BrowserPolicy:
        """The policy of a gateway listening on ``http_addr``; a ConfigError names a bad
        ``cors_origins`` entry (it must be an origin: ``scheme://host[:port]``, no path)."""
        rules = [HostRule(name) for name in sorted(LOOPBACK_NAMES)]
        host, _ = split_host_port(http_addr, "gateway: http_addr")
        if host.lower() not in WILDCARD_HOSTS:
            rules.append(HostRule.parse(f"[{host}]" if ":" in host else host))
        extra = [entry.strip() for entry in allowed_hosts if entry.strip()]
        rules += [HostRule.parse(entry) for entry in extra if entry != "*"]
        origins = frozenset(_origin(entry) for entry in cors_origins if entry.strip())
        return cls(tuple(rules), any_host="*" in extra, cors_origins=origins)

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserPolicy:
        return cls.of(settings[HTTP_ADDR], settings[ALLOWED_HOSTS], settings[CORS_ORIGINS])

    def host_allowed(self, host: str) -> bool:
        if self.any_host:
            return True
        name, port = split_host(host)
        return bool(name) and any(rule.matches(name, port) for rule in self.hosts)

    def cors_allowed(self, origin: str) -> bool:
        """Whether ``origin`` is one of ``[gateway] cors_origins``."""
        return origin.strip().lower().rstrip("/") in self.cors_origins

    def origin_allowed(self, origin: str, own: Iterable[str]) -> bool:
        """Whether a page of ``origin`` may change state: it is the gateway's own (its authority
        is one of ``own``, the request's ``Host`` and ``X-Forwarded-Host``) or a CORS origin."""
        if self.cors_allowed(origin):
            return True
        authority = origin_authority(origin)
        return bool(authority) and authority in {value.strip().lower() for value in own if value}


def _origin(entry: str) -> str:
    value = entry.strip().lower().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ConfigError(
            f"gateway.cors_origins: {entry!r} is not an origin (scheme://host[:port], no path)"
        )
    return value


class BrowserGuard:
    """The ASGI middleware applying a :class:`BrowserPolicy` to every HTTP request."""

    def __init__(self, app: ASGIApp, policy: BrowserPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        host = headers.get("host", "")
        if path not in EXEMPT_FROM_HOST and not self.policy.host_allowed(host):
            message = (
                f"Host {host!r} is not a name of this gateway: add it to [gateway] allowed_hosts"
            )
            await _error(send, 400, INVALID_HOST, message)
            return
        origin = headers.get("origin")
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if origin is not None and preflight:
            await self._preflight(send, origin)
            return
        if not (path == "/ui" or path.startswith("/ui/")):  # the console checks its forms
            refusal = self._refusal(method, headers, origin)
            if refusal is not None:
                await _error(send, *refusal)
                return
        if origin is None or not self.policy.cors_allowed(origin):
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *_cors_headers(origin)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except TrineError as exc:
            # The token check's 401 or 403 is raised by a middleware after this one, outside
            # the routes' own error handling: answered here, the page can read it (CORS).
            if started:
                raise
            extra = [(b"www-authenticate", REALM.encode())] if http_status(exc) == 401 else []
            await _error(send_with_cors, http_status(exc), exc.code, exc.message, extra)

    def _refusal(
        self, method: str, headers: dict[str, str], origin: str | None
    ) -> tuple[int, str, str] | None:
        if method in STATE_CHANGING and origin is not None:
            own = (headers.get("host", ""), headers.get("x-forwarded-host", ""))
            if not self.policy.origin_allowed(origin, own):
                message = (
                    f"a {method} from a page of {origin} is refused: add the origin to "
                    "[gateway] cors_origins to allow it"
                )
                return 403, FORBIDDEN_ORIGIN, message
        if _has_body(headers) and not is_json(headers.get("content-type", "")):
            got = headers.get("content-type") or "none"
            message = f"the body must be {JSON_TYPE} (Content-Type: {got})"
            return 415, UNSUPPORTED_MEDIA_TYPE, message
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if _has_body(headers) and encoding not in ("", "identity"):
            # Nothing here decompresses: the body would be read as JSON and refused as
            # malformed, which names the symptom, not the cause.
            message = f"the body must not be compressed (Content-Encoding: {encoding})"
            return 415, UNSUPPORTED_MEDIA_TYPE, message
        return None

    async def _preflight(self, send: Send, origin: str) -> None:
        if not self.policy.cors_allowed(origin):
            message = f"cross-origin requests from {origin} are not allowed: [gateway] cors_origins"
            await _error(send, 403, FORBIDDEN_ORIGIN, message)
            return
        headers = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", CORS_HEADERS.encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            (b"content-length", b"0"),
        ]
        await _respond(send, 204, headers, b"")


def is_json(content_type: str) -> bool:
    """``application/json``, with or without parameters (``; charset=utf-8``)."""
    return content_type.split(";", 1)[0].strip().lower() == JSON_TYPE


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (bool(length) and length != "0")


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.strip().encode("latin-1")),
        (b"vary", b"Origin"),
    ]


async def _error(
    send: Send, status: int, code: str, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """The API's usual JSON error, answered before any route runs."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += list(extra)
    await _respond(send, status, headers, body)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    start = HTTPResponseStartEvent(type="http.response.start", status=status, headers=headers)
    await send(start)
    await send(HTTPResponseBodyEvent(type="http.response.body", body=body, more_body=False))


def browser_guard(settings: Settings) -> DefineMiddleware:
    """The app's middleware for :class:`BrowserGuard`, from the gateway's settings."""
    return DefineMiddleware(BrowserGuard, policy=BrowserPolicy.from_settings(settings))


# -- listening -----------------------------------------------------------------------------------


def check_listen_address(http_addr: str, tokens_file: Any, insecure: bool) -> bool:
    """Refuse, in one line, to serve the API to the network with no token required: anyone who
    reached it could read every run's input and start or cancel runs. ``insecure`` accepts it
    (a trusted network, or a proxy in front that authenticates): then this answers True, for
    the role to log a warning; False when the address is loopback or tokens are required."""
    host, _ = split_host_port(http_addr, "gateway: http_addr")
    if str(tokens_file or "") or is_loopback(host):
        return False
    if insecure:
        return True
    raise ConfigError(
        f"gateway: http_addr {http_addr} is not a loopback address and no [auth] tokens_file is "
        "set, so anyone who reaches it could read and start runs: set --auth-tokens-file (make "
        "tokens with `trine tokens new`), listen on 127.0.0.1, or pass --insecure to accept this"
    )


__all__ = [
    "ALLOWED_HOSTS",
    "CORS_ORIGINS",
    "BrowserGuard",
    "BrowserPolicy",
    "browser_guard",
    "check_listen_address",
    "is_json",
]
