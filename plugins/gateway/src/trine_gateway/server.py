"""Serving the app with uvicorn inside the runtime's event loop.

The listening socket is bound here first, so that a port in use is a one-line ``ConfigError``
rather than uvicorn's ``sys.exit``. uvicorn's own signal handling is turned off: the trine CLI owns
SIGTERM/SIGINT and stops the roles, and :meth:`GatewayServer.stop` stops this server.

With ``[tls] cert``/``key`` it serves HTTPS (uvicorn loads the files; they are checked first, so a
bad one is a one-line ``ConfigError`` too), unless ``[gateway] https = false``: plain HTTP behind
a proxy that terminates TLS, while the gateway's own gRPC calls still use ``[tls]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from litestar import Litestar

from trine_core import ConfigError, Setting, Settings, cannot_listen, split_host_port
from trine_core.tls import TlsFiles, check_server_files
from trine_gateway.connections import HttpLimits
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.metrics import instrument
from trine_gateway.turns import Turns

BACKLOG = 2048
GRACEFUL_SHUTDOWN_S = 5
"""How long a stop waits for responses in flight before uvicorn cancels them. Event streams and
long-polls end at once on their own (``Lifecycle.close``), so this only bounds slow clients."""


HTTPS = Setting(
    "https",
    True,
    "serve HTTPS when [tls] cert and key are set; false: plain HTTP (behind a proxy that "
    "terminates TLS), the gateway's gRPC calls still using [tls]",
    section="gateway",
)


def https_files(settings: Settings) -> TlsFiles | None:
    """The certificate and key the gateway serves HTTPS with (checked: a ConfigError names a
    bad file); None for plain HTTP."""
    if not settings[HTTPS] or not TlsFiles.from_settings(settings).serves_tls:
        return None
    return check_server_files(settings)


class _Server(uvicorn.Server):
    """uvicorn's server without signal handlers, telling when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.accepting = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            # uvicorn exits the process when the app's lifespan startup fails; a task must not
            raise RuntimeError("the gateway app failed to start (ASGI lifespan)") from None
        self.accepting.set()


def bind(address: str, what: str = "gateway") -> socket.socket:
    """A listening TCP socket on ``host:port``; a ConfigError naming the address otherwise."""
    host, port = split_host_port(address, f"{what}: http_addr")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{what}: cannot listen on {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    # The protocol must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections
    # accepted from such a socket, and without it every keep-alive response waited ~40 ms for
    # the client's delayed ACK (headers and body are two writes).
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise cannot_listen(what, address, exc) from None
    sock.setblocking(False)
    return sock


class GatewayServer:
    """The app served on ``address`` until :meth:`stop`."""

    def __init__(
        self,
        app: Litestar,
        address: str,
        lifecycle: Lifecycle,
        tls: TlsFiles | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        """``tls``: serve HTTPS with its certificate and key (:func:`https_files`); ``limits``:
        what one connection may cost (:class:`HttpLimits`, its defaults if None)."""
        self.app = app
        self.address = address
        self.lifecycle = lifecycle
        self.tls = tls
        self.limits = limits or HttpLimits()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def serving(self) -> bool:
        return (
            self._server is not None
            and self._server.accepting.is_set()
            and self._task is not None
            and not self._task.done()
            and not self._server.should_exit
        )

    async def start(self) -> None:
        """Listen, and return once connections are accepted."""
        sock = bind(self.address)
        self.host, self.port = sock.getsockname()[:2]
        config = uvicorn.Config(
            # trine_http_request_duration_seconds, a request's wait for its turn included
            instrument(Turns(self.app, self.limits.requests_per_turn)),
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            # httptools with a head cap, a read deadline and a connection cap (see connections)
            http=self.limits.protocol(),
            timeout_keep_alive=self.limits.idle_timeout_s,  # type: ignore[arg-type]  # a float works
            # No ssl_ca_certs: browsers and HTTP clients present no certificate; tokens are
            # the gateway's authentication.
            ssl_certfile=self.tls.cert if self.tls is not None else None,
            ssl_keyfile=self.tls.key if self.tls is not None else None,
        )
        server = self._server = _Server(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]), name="trine-gateway")
        accepting = asyncio.create_task(server.accepting.wait())
        try:
            await asyncio.wait({task, accepting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            accepting.cancel()
        if task.done():
            sock.close()
            task.result()  # raises why it stopped
            raise RuntimeError("the gateway server stopped while starting")

    async def stop(self) -> None:
        """Stop accepting, end event streams and long-polls, and wait for the server to finish."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        await self.lifecycle.close()
        try:
            await task
        finally:
            self._server = self._task = None
