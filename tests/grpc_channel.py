"""A grpclib channel a test can wait to see closed.

``Channel.close()`` only starts closing the transport: over TLS (``split``) the close_notify
exchange needs the loop to run on, and ``asyncio.run`` closes the loop at once, so the socket was
left to the garbage collector. Its ResourceWarning (an error in this suite, see conftest.py) then
failed whichever test's teardown collected it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpclib.client import Channel, Handler
from grpclib.protocol import H2Protocol


class _Protocol(H2Protocol):
    """grpclib's connection, with a future set once its transport is gone (the socket closed)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class ClosingChannel(Channel):
    """A grpclib channel whose :meth:`closed` returns once its sockets are closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: list[_Protocol] = []

    def _protocol_factory(self) -> H2Protocol:
        protocol = _Protocol(Handler(), self._config, self._h2_config)
        self.protocols.append(protocol)
        return protocol

    async def closed(self) -> None:
        """:meth:`close`, then wait until each connection's transport is gone (after 10 s,
        abort it). A connection whose TLS handshake failed never reached the protocol: there is
        nothing of it to wait for here."""
        self.close()
        for protocol in self.protocols:
            if protocol.transport is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(protocol.lost), 10)
            except TimeoutError:
                protocol.transport.abort()  # type: ignore[attr-defined]
