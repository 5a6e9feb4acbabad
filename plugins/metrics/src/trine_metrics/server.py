"""``/metrics`` on an address of its own (``[metrics] addr``), for a process with no gateway.

The engine and coordinator processes of a split have no HTTP server, so this is a small one:
asyncio streams on the runtime's event loop, HTTP/1.1 ``GET``/``HEAD`` with keep-alive, nothing
else. It runs on the loop rather than in a thread (as prometheus-client's ``start_http_server``
would) because collecting calls the gauges' callbacks, which read the roles' in-memory state that
only the loop may touch. A scrape costs the loop the time to build the text (about a millisecond
for trine's metrics; more with thousands of active runs, which the run gauges count).

The socket is bound by :meth:`MetricsServer.listen`, synchronously, so a port in use is a
one-line ``ConfigError`` at boot; connections queue in its backlog until :meth:`serve` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from trine_core import cannot_listen, split_host_port

MAX_HEAD_BYTES = 16 * 1024
PATHS = frozenset({"/metrics", "/"})
IDLE_TIMEOUT_S = 60.0


class MetricsServer:
    """Serves ``registry`` at ``/metrics`` (and ``/``) on ``address`` until :meth:`close`."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self.registry = registry
        self.address = address
        self.host = ""
        self.port = 0
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def listen(self) -> None:
        """Bind and listen now; a ConfigError naming the address if it cannot."""
        host, port = split_host_port(self.address, "metrics: addr")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise cannot_listen("metrics", self.address, OSError(exc.strerror)) from None
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise cannot_listen("metrics", self.address, exc) from None
        sock.setblocking(False)
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]

    def start(self) -> None:
        """Listen (if not yet) and serve from a task of the running loop."""
        if self._sock is None:
            self.listen()
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name="trine-metrics-server"
        )

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, sock=self._sock)

    def close(self) -> None:
        """Stop listening and drop open connections (synchronous: hooks are)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        for writer in list(self._writers):
            writer.close()
        self._server = self._task = self._sock = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._answer(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except TimeoutError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await _respond(writer, "400 Bad Request", b"bad request\n", close=True)
            return False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        if "content-length" in headers or "transfer-encoding" in headers:
            close = True  # a body we do not read: do not reuse the connection
        path = target.partition("?")[0]
        if method not in ("GET", "HEAD"):
            await _respond(writer, "405 Method Not Allowed", b"GET only\n", close=close)
        elif path not in PATHS:
            await _respond(writer, "404 Not Found", b"metrics are at /metrics\n", close=close)
        else:
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            body = encoder(self.registry)
            await _respond(
                writer,
                "200 OK",
                body,
                content_type=content_type,
                close=close,
                head=method == "HEAD",
            )
        return not close


async def _respond(
    writer: asyncio.StreamWriter,
    status: str,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    close: bool = False,
    head: bool = False,
) -> None:
    writer.write(
        (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}"
            "\r\n\r\n"
        ).encode("latin-1")
    )
    if not head:
        writer.write(body)
    await writer.drain()
