"""Serving local ``Backend`` and ``Dispatcher`` implementations over gRPC.

The generated service bases (``BackendBase``, ``DispatcherBase``) are subclassed once, with every
method of the contract forwarding to the implementation registered for that kind; what is not
registered (yet) answers UNIMPLEMENTED. One grpclib server per listen address carries both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpclib
from grpclib.const import Status
from grpclib.health.service import Health
from grpclib.server import Server

from trine_core import BACKEND, DISPATCHER, Backend, Dispatcher, TrineError, cannot_listen
from trine_proto.codec import GrpcCodec
from trine_proto.trine.v1 import BackendBase, DispatcherBase
from trine_transport_grpc.errors import to_grpc

STREAMING = frozenset({"subscribe"})


def contract_methods(protocol: type) -> list[str]:
    """The method names of a contract Protocol (they match the generated stubs')."""
    return sorted(
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    )


def _forwarding(base: type, kind: str, protocol: type) -> type:
    def unary(name: str) -> Callable[..., Any]:
        async def method(self: Any, message: Any) -> Any:
            try:
                return await getattr(self.target(), name)(message)
            except TrineError as exc:
                raise to_grpc(exc) from None

        return method

    def streaming(name: str) -> Callable[..., Any]:
        async def method(self: Any, message: Any) -> AsyncIterator[Any]:
            try:
                async for item in getattr(self.target(), name)(message):
                    yield item
            except TrineError as exc:
                raise to_grpc(exc) from None

        return method

    def target(self: Any) -> Any:
        implementation = self.implementations.get(kind)
        if implementation is None:
            raise grpclib.GRPCError(Status.UNIMPLEMENTED, f"{kind} is not served here")
        return implementation

    namespace: dict[str, Any] = {"target": target}
    for name in contract_methods(protocol):
        namespace[name] = streaming(name) if name in STREAMING else unary(name)
    return type(f"Served{base.__name__}", (base,), namespace)


ServedBackend = _forwarding(BackendBase, BACKEND, Backend)
ServedDispatcher = _forwarding(DispatcherBase, DISPATCHER, Dispatcher)


class ContractServer:
    """A grpclib server on one address, serving whichever contracts are registered with it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.implementations: dict[str, object] = {}
        services = [ServedBackend(), ServedDispatcher()]
        for service in services:
            service.implementations = self.implementations
        # The standard gRPC health service beside ours; messages through trine_proto's codec.
        self._server = Server([*services, Health()], codec=GrpcCodec())
        self._started = False

    async def start(self) -> None:
        try:
            await self._server.start(self.host, self.port)
        except OSError as exc:
            where = f"{self.host}:{self.port} for backend/dispatcher"
            raise cannot_listen("grpc", where, exc) from None
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._server.close()
            await self._server.wait_closed()
