"""The grpc worker transport passes the worker-transport contract suite: the coordinator's side
(``GrpcTransport.serve_workers``) and the worker SDK's (``trine._grpc_transport.GrpcConnector``,
the ``grpc`` entry point of ``trine.worker_transports``) over loopback."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from trine.transport import ConnectOptions, CoordinatorStream, connector_for
from trine_core import Settings, WorkerHub, WorkerListener, WorkerServing
from trine_core.testing.worker_transport import LIMIT, Dial, ServeWorkers, WorkerTransportContract
from trine_transport_grpc.plugin import GrpcTransport


class TestGrpcWorkerTransport(WorkerTransportContract):
    @pytest.fixture
    def serve(self) -> ServeWorkers:
        transport = GrpcTransport(Settings())

        async def serve(hub: WorkerHub, serving: WorkerServing) -> WorkerListener:
            return await transport.serve_workers(hub, "grpc://127.0.0.1:0", serving)

        return serve

    @pytest.fixture
    def dial(self) -> Dial:
        async def dial(address: str, metadata: Mapping[str, str]) -> CoordinatorStream:
            options = ConnectOptions(metadata=metadata, max_message_bytes=4 * LIMIT)
            return await connector_for(address).connect(address, options)

        return dial
