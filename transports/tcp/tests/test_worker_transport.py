"""The tcp worker transport passes the worker-transport contract suite: the coordinator's side
(``TcpTransport.serve_workers``) and the worker SDK's (``trine._tcp_transport.TcpConnector``, the
``tcp`` entry point of ``trine.worker_transports``) over loopback."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from trine.transport import ConnectOptions, CoordinatorStream, connector_for
from trine_core import Settings, WorkerHub, WorkerListener, WorkerServing
from trine_core.testing.worker_transport import LIMIT, Dial, ServeWorkers, WorkerTransportContract
from trine_transport_tcp.plugin import TcpTransport


class TestTcpWorkerTransport(WorkerTransportContract):
    @pytest.fixture
    def serve(self) -> ServeWorkers:
        transport = TcpTransport(Settings())

        async def serve(hub: WorkerHub, serving: WorkerServing) -> WorkerListener:
            return await transport.serve_workers(hub, "tcp://127.0.0.1:0", serving)

        return serve

    @pytest.fixture
    def dial(self) -> Dial:
        async def dial(address: str, metadata: Mapping[str, str]) -> CoordinatorStream:
            options = ConnectOptions(metadata=metadata, max_message_bytes=4 * LIMIT)
            return await connector_for(address).connect(address, options)

        return dial
