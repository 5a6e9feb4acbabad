"""The ``tcp://host:port`` transport: the coordinator's worker port as length-prefixed protobuf
frames on plain TCP (:mod:`.workers`, the wire in :mod:`trine_proto.frames`). It carries workers
only; roles reach each other over ``grpc://`` (or in one process).

Choose it with ``[coordinator] worker_addr = "tcp://host:port"`` and give workers the same
address; TLS and tokens work as on ``grpc://`` (the coordinator's ``[tls]`` files and
``[auth] tokens_file``).
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from trine_core import (
    ConfigError,
    Settings,
    TransportRegistry,
    WorkerHub,
    WorkerServing,
    contract_name,
    hookimpl,
)
from trine_transport_tcp.workers import TcpWorkerListener, serve_workers

T = TypeVar("T")


class TcpTransport:
    scheme: ClassVar[str] = "tcp"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self._worker_ports: list[TcpWorkerListener] = []

    @staticmethod
    def _roles_refused(contract: type) -> ConfigError:
        return ConfigError(
            f"the tcp transport carries workers only, not {contract_name(contract)}: give roles "
            "a grpc:// address"
        )

    async def connect(self, contract: type[T], address: str) -> T:
        raise self._roles_refused(contract)

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        raise self._roles_refused(contract)

    async def serve_workers(
        self, hub: WorkerHub, address: str, serving: WorkerServing
    ) -> TcpWorkerListener:
        """The worker port, with the coordinator's TLS and message limit."""
        listener = await serve_workers(hub, address, serving)
        self._worker_ports.append(listener)
        return listener

    async def close(self) -> None:
        for listener in self._worker_ports:
            await listener.close()
        self._worker_ports.clear()


@hookimpl
def trine_register_transports(registry: TransportRegistry) -> None:
    registry.add_transport(TcpTransport.scheme, TcpTransport)
