"""The coordinator address's scheme picks the worker transport: ``grpc://`` (or none) is the SDK's
own, a third party's comes from its ``trine.worker_transports`` entry point, and a scheme nothing
installed serves is one clear error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trine
from trine import transport

RELAY = '''
"""A third party's worker transport: ``relay://host:port`` carries the worker's stream over the
SDK's gRPC connector, and counts the streams it opened."""

from trine._grpc_transport import GrpcConnector

opened = []


class RelayConnector:
    async def connect(self, address, options):
        opened.append((address, dict(options.metadata)))
        return await GrpcConnector().connect(address.replace("relay://", "grpc://", 1), options)
'''


@pytest.fixture
def relay_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution providing ``relay`` in ``trine.worker_transports``, found on ``sys.path``
    by ``importlib.metadata`` as an installed one is."""
    (tmp_path / "relay_transport.py").write_text(RELAY)
    info = tmp_path / "trine_relay-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trine-relay\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[trine.worker_transports]\nrelay = relay_transport:RelayConnector\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("relay_transport", None)


def test_an_address_without_a_scheme_or_with_grpc_uses_the_sdks_grpc_transport() -> None:
    assert transport.installed()["grpc"] == "trine._grpc_transport:GrpcConnector"
    for address in ("127.0.0.1:7481", "grpc://127.0.0.1:7481", "grpc://[::1]:7481"):
        worker = trine.Worker(address=address)
        assert type(worker._connector).__name__ == "GrpcConnector"


def test_a_scheme_nothing_installed_serves_is_one_error_naming_it_and_the_installed_ones() -> None:
    with pytest.raises(ValueError, match=r"no worker transport for nats:// is installed") as error:
        trine.Worker(address="nats://127.0.0.1:4222")
    assert "(installed: grpc, tcp)" in str(error.value)
    assert isinstance(error.value, transport.UnknownScheme)


def test_a_grpc_address_without_a_port_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="a worker address is"):
        trine.Worker(address="grpc://coordinator")


def test_a_tcp_address_uses_the_sdks_tcp_transport_and_needs_a_port() -> None:
    assert transport.installed()["tcp"] == "trine._tcp_transport:TcpConnector"
    worker = trine.Worker(address="tcp://127.0.0.1:7481")
    assert type(worker._connector).__name__ == "TcpConnector"
    with pytest.raises(ValueError, match=r"a worker address is \[tcp://\]host:port"):
        trine.Worker(address="tcp://coordinator")


@pytest.mark.usefixtures("relay_installed")
async def test_a_third_party_transport_is_found_by_its_entry_point_and_carries_the_worker(
    coordinator: Any, serve: Any
) -> None:
    worker = trine.Worker(worker_id="w-relay", address=f"relay://127.0.0.1:{coordinator.port}")

    @worker.function
    async def order(ctx: trine.Context, order: dict) -> dict:
        return order

    serve(worker)
    session = await coordinator.registered()
    assert session.register.worker_id == "w-relay"
    relay = sys.modules["relay_transport"]
    [(address, metadata)] = relay.opened
    assert address == f"relay://127.0.0.1:{coordinator.port}"
    assert metadata["trine-worker-instance"] == worker.instance
    assert "relay" in transport.installed()
