"""The ``grpc://host:port`` transport: ``Backend``, ``Dispatcher`` and ``WorkerRegistry`` across
processes, and the coordinator's worker port (``WorkerService.Connect``, :mod:`.workers`), over
grpclib.

With ``[tls] cert``/``key`` every port it serves speaks TLS, and with ``[tls] ca`` requires client
certificates that CA signed (mutual TLS between roles); it dials with TLS whenever any ``[tls]``
file is set, verifying the peer and presenting ``[tls] cert``. Whoever reaches one of its ports
controls runs and workers' functions, so it refuses to serve on a non-loopback address without
mutual TLS unless ``--insecure`` (:func:`trine_core.tls.refuse_open_listener`).
"""

from __future__ import annotations

import functools
import ssl
from typing import ClassVar, TypeVar, cast

from trine_core import (
    MAX_PAYLOAD_BYTES,
    Backend,
    ConfigError,
    Dispatcher,
    Setting,
    Settings,
    SettingsRegistry,
    TransportRegistry,
    WorkerHub,
    WorkerRegistry,
    WorkerServing,
    contract_name,
    hookimpl,
    split_host_port,
)
from trine_core.tls import client_context, refuse_open_listener, server_context
from trine_proto.limits import derived_limit
from trine_transport_grpc.client import (
    ChannelPool,
    Peer,
    RemoteBackend,
    RemoteDispatcher,
    RemoteWorkerRegistry,
)
from trine_transport_grpc.server import ContractServer
from trine_transport_grpc.workers import GrpcWorkerListener, serve_workers

T = TypeVar("T")
MAX_MESSAGE_BYTES = Setting(
    "max_message_bytes",
    0,
    "largest gRPC message a role's port or channel accepts, in bytes (refused from its length "
    "prefix, RESOURCE_EXHAUSTED); 0: 64 x max_payload_bytes (a work item carries a run's whole "
    "journal), at least 4 MiB",
    section="grpc",
)
CLIENTS: dict[type, type[RemoteBackend] | type[RemoteDispatcher] | type[RemoteWorkerRegistry]] = {
    Backend: RemoteBackend,
    Dispatcher: RemoteDispatcher,
    WorkerRegistry: RemoteWorkerRegistry,
}


class GrpcTransport:
    scheme: ClassVar[str] = "grpc"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self._servers: dict[tuple[str, int], ContractServer] = {}
        self._channels: dict[tuple[str, int], ChannelPool] = {}
        self._worker_ports: list[GrpcWorkerListener] = []

    @functools.cached_property
    def client_tls(self) -> ssl.SSLContext | None:
        """The context every channel dials with (built once: the files are read at boot)."""
        return client_context(self.settings)

    @functools.cached_property
    def server_tls(self) -> ssl.SSLContext | None:
        """The context every port serves with (client certificates required with a CA)."""
        return server_context(self.settings)

    @functools.cached_property
    def max_message_bytes(self) -> int:
        """The limit on every message this transport's ports and channels receive."""
        explicit = self.settings[MAX_MESSAGE_BYTES]
        if explicit < 0:
            raise ConfigError(f"grpc.max_message_bytes: must be 0 or positive, got {explicit}")
        return derived_limit(self.settings[MAX_PAYLOAD_BYTES], explicit)

    @staticmethod
    def _host_port(address: str) -> tuple[str, int]:
        return split_host_port(address.removeprefix("grpc://"), address)

    @staticmethod
    def _carried(contract: type) -> None:
        if contract not in CLIENTS:
            raise ConfigError(
                "the grpc transport carries backend, dispatcher and worker_registry, not "
                f"{contract_name(contract)}"
            )

    async def connect(self, contract: type[T], address: str) -> T:
        self._carried(contract)
        host, port = self._host_port(address)
        pool = self._channels.get((host, port))
        if pool is None:
            pool = self._channels[(host, port)] = ChannelPool(
                host, port, tls=self.client_tls, max_message_bytes=self.max_message_bytes
            )
        return cast(T, CLIENTS[contract](Peer(pool, address)))

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        self._carried(contract)
        host, port = self._host_port(address)
        server = self._servers.get((host, port))
        if server is None:
            served = contract in (Backend, Dispatcher)
            what = "backend/dispatcher" if served else contract_name(contract)
            refuse_open_listener(self.settings, host, f"{host}:{port}", f"grpc: {what}")
            server = ContractServer(
                host, port, tls=self.server_tls, max_message_bytes=self.max_message_bytes
            )
            await server.start(what)
            self._servers[(host, port)] = server
        if contract is Backend:
            server.served.backend = cast(Backend, implementation)
        elif contract is Dispatcher:
            server.served.dispatcher = cast(Dispatcher, implementation)
        else:
            server.served.worker_registry = cast(WorkerRegistry, implementation)

    async def serve_workers(
        self, hub: WorkerHub, address: str, serving: WorkerServing
    ) -> GrpcWorkerListener:
        """The worker port: its own server, TLS and message limit (the coordinator's, not
        ``[grpc]``'s: workers are admitted by token, not by the roles' mutual TLS)."""
        listener = await serve_workers(hub, address, serving)
        self._worker_ports.append(listener)
        return listener

    async def close(self) -> None:
        for listener in self._worker_ports:
            await listener.close()
        self._worker_ports.clear()
        for server in self._servers.values():
            await server.close()
        for pool in self._channels.values():
            pool.close()
        self._servers.clear()
        self._channels.clear()


@hookimpl
def trine_add_settings(registry: SettingsRegistry) -> None:
    registry.add(MAX_MESSAGE_BYTES)


@hookimpl
def trine_register_transports(registry: TransportRegistry) -> None:
    registry.add_transport(GrpcTransport.scheme, GrpcTransport)
