"""A ``Backend`` or ``Dispatcher`` on another process: the generated stub with a deadline on
every call and errors turned back into the TrineErrors the engine raised.

grpclib's channel connects lazily and reconnects on the next call after a failure, so a peer
that restarts is picked up again; until then calls raise ``Unavailable`` and the caller decides
how to back off (the coordinator retries, the gateway answers 503).

One HTTP/2 connection carries at most 100 concurrent streams (the server's setting, h2's
default) and grpclib queues a call beyond that until one ends: a gateway holding that many
``subscribe`` streams (SSE clients) would get no other call through. So calls to a peer go over a
``ChannelPool``, which opens another connection when the ones it has are full.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpclib
from grpclib.client import Channel

from trine_proto.codec import GrpcCodec
from trine_transport_grpc.errors import from_grpc, unreachable
from trine_transport_grpc.server import STREAMING

DEFAULT_DEADLINE_S = 10.0
# Long-polls get their own wait on top of the deadline.
WAIT_FIELD = {"take_work": "wait_ms", "wait_run": "timeout_ms"}
UNREACHABLE = (ConnectionError, OSError, grpclib.exceptions.StreamTerminatedError)
STREAMS_PER_CHANNEL = 64
"""Calls in flight on one connection before the pool opens another (below the server's 100)."""


class ChannelPool:
    """The connections to one peer; a call takes the first with a free stream."""

    def __init__(self, host: str, port: int, streams_per_channel: int = STREAMS_PER_CHANNEL):
        self.host, self.port = host, port
        self._limit = streams_per_channel
        self._channels: list[Channel] = []
        self._in_use: dict[Channel, int] = {}

    @contextlib.contextmanager
    def channel(self) -> Iterator[Channel]:
        channel = next((c for c in self._channels if self._in_use[c] < self._limit), None)
        if channel is None:
            channel = Channel(self.host, self.port, codec=GrpcCodec())
            self._channels.append(channel)
            self._in_use[channel] = 0
        self._in_use[channel] += 1
        try:
            yield channel
        finally:
            if channel in self._in_use:  # not if the pool was closed meanwhile
                self._in_use[channel] -= 1

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._in_use.clear()


class RemoteContract:
    """Every contract method of ``stub_type``, called over ``pool``; ``address`` names the peer
    in errors."""

    def __init__(
        self,
        stub_type: type,
        pool: ChannelPool,
        address: str,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self._stub_type = stub_type
        self._pool = pool
        self._address = address
        self._deadline_s = deadline_s

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not callable(getattr(self._stub_type, name, None)):
            raise AttributeError(name)
        if name in STREAMING:
            return lambda message: self._stream(name, message)

        async def unary(message: Any) -> Any:
            timeout = self._deadline_s
            if name in WAIT_FIELD:
                timeout += getattr(message, WAIT_FIELD[name]) / 1000
            try:
                with self._pool.channel() as channel:
                    call = getattr(self._stub_type(channel), name)
                    return await call(message, timeout=timeout)
            except grpclib.GRPCError as exc:
                raise from_grpc(exc, self._address) from None
            except UNREACHABLE as exc:
                raise unreachable(exc, self._address) from None

        return unary

    async def _stream(self, name: str, message: Any) -> AsyncIterator[Any]:
        try:
            with self._pool.channel() as channel:
                call = getattr(self._stub_type(channel), name)
                # aclosing: when our consumer stops early, the gRPC stream is reset now (and the
                # peer's subscription closed), not whenever the stub's generator is collected.
                async with contextlib.aclosing(call(message)) as items:
                    async for item in items:
                        yield item
        except grpclib.GRPCError as exc:
            raise from_grpc(exc, self._address) from None
        except UNREACHABLE as exc:
            raise unreachable(exc, self._address) from None
