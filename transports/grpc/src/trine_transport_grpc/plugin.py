"""The ``grpc://host:port`` transport: contracts across processes over gRPC (grpclib)."""

from __future__ import annotations

from typing import ClassVar

from trine_core import (
    BACKEND,
    DISPATCHER,
    ConfigError,
    Settings,
    TransportRegistry,
    hookimpl,
    split_host_port,
)
from trine_proto.trine.v1 import BackendStub, DispatcherStub
from trine_transport_grpc.client import ChannelPool, RemoteContract
from trine_transport_grpc.server import ContractServer

STUBS = {BACKEND: BackendStub, DISPATCHER: DispatcherStub}


class GrpcTransport:
    scheme: ClassVar[str] = "grpc"

    def __init__(self, settings: Settings | None = None) -> None:
        self._servers: dict[tuple[str, int], ContractServer] = {}
        self._channels: dict[tuple[str, int], ChannelPool] = {}

    @staticmethod
    def _host_port(address: str) -> tuple[str, int]:
        return split_host_port(address.removeprefix("grpc://"), address)

    async def connect(self, kind: str, address: str) -> object:
        if kind not in STUBS:
            raise ConfigError(f"the grpc transport carries backend and dispatcher, not {kind!r}")
        host, port = self._host_port(address)
        pool = self._channels.get((host, port))
        if pool is None:
            pool = self._channels[(host, port)] = ChannelPool(host, port)
        return RemoteContract(STUBS[kind], pool, address)

    async def serve(self, kind: str, implementation: object, address: str) -> None:
        host, port = self._host_port(address)
        server = self._servers.get((host, port))
        if server is None:
            server = ContractServer(host, port)
            await server.start()
            self._servers[(host, port)] = server
        server.implementations[kind] = implementation

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
        for pool in self._channels.values():
            pool.close()
        self._servers.clear()
        self._channels.clear()


@hookimpl
def trine_register_transports(registry: TransportRegistry) -> None:
    registry.add_transport(GrpcTransport.scheme, GrpcTransport)
