"""A ``Backend`` or ``Dispatcher`` on another process: the generated stub with a deadline on
every call and errors turned back into the TrineErrors the engine raised.

grpclib's channel connects lazily and reconnects on the next call after a failure, so a peer
that restarts is picked up again; until then calls raise ``Unavailable`` and the caller decides
how to back off (the coordinator retries, the gateway answers 503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpclib

from trine_transport_grpc.errors import from_grpc, unreachable
from trine_transport_grpc.server import STREAMING

DEFAULT_DEADLINE_S = 10.0
# Long-polls get their own wait on top of the deadline.
WAIT_FIELD = {"take_work": "wait_ms", "wait_run": "timeout_ms"}
UNREACHABLE = (ConnectionError, OSError, grpclib.exceptions.StreamTerminatedError)


class RemoteContract:
    """Every contract method, called on ``stub``; ``address`` names the peer in errors."""

    def __init__(self, stub: Any, address: str, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self._stub = stub
        self._address = address
        self._deadline_s = deadline_s

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call = getattr(self._stub, name)
        if name in STREAMING:
            return lambda message: self._stream(call, message)

        async def unary(message: Any) -> Any:
            timeout = self._deadline_s
            if name in WAIT_FIELD:
                timeout += getattr(message, WAIT_FIELD[name]) / 1000
            try:
                return await call(message, timeout=timeout)
            except grpclib.GRPCError as exc:
                raise from_grpc(exc, self._address) from None
            except UNREACHABLE as exc:
                raise unreachable(exc, self._address) from None

        return unary

    async def _stream(self, call: Any, message: Any) -> AsyncIterator[Any]:
        try:
            async for item in call(message):
                yield item
        except grpclib.GRPCError as exc:
            raise from_grpc(exc, self._address) from None
        except UNREACHABLE as exc:
            raise unreachable(exc, self._address) from None
