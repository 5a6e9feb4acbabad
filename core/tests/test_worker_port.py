"""``RoleContext.serve_workers``: a role's worker port goes to the transport of its address's
scheme, through the runtime, as a contract's address does."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from trine_core import (
    TARGET,
    ConfigError,
    RoleContext,
    RoleRegistry,
    Runtime,
    Setting,
    Settings,
    SettingsRegistry,
    TransportRegistry,
    WorkerHub,
    WorkerServing,
    WorkerStream,
    hookimpl,
    worker_address,
)

PORT = Setting("port_addr", "loop://one", "where the hub role listens for workers", section="hub")


class Listener:
    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class LoopTransport:
    """Carries workers (``serve_workers``) and nothing else; remembers what it was asked."""

    scheme: ClassVar[str] = "loop"
    served: ClassVar[list[tuple[WorkerHub, str, WorkerServing]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def connect(self, contract: type, address: str) -> Any:
        raise ConfigError("loop carries workers only")

    async def serve(self, contract: type, implementation: object, address: str) -> None:
        raise ConfigError("loop carries workers only")

    async def serve_workers(self, hub: WorkerHub, address: str, serving: WorkerServing) -> Listener:
        self.served.append((hub, address, serving))
        return Listener(address)

    async def close(self) -> None:
        pass


class PlainTransport:
    """A transport of contracts only: it has no ``serve_workers``."""

    scheme: ClassVar[str] = "plain"

    def __init__(self, settings: Settings) -> None:
        pass

    async def connect(self, contract: type, address: str) -> Any:
        raise ConfigError("plain carries nothing here")

    async def serve(self, contract: type, implementation: object, address: str) -> None:
        raise ConfigError("plain carries nothing here")

    async def close(self) -> None:
        pass


class HubRole:
    name: ClassVar[str] = "hub"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listener: Any = None

    async def serve(self, stream: WorkerStream) -> None:
        pass

    async def healthy(self) -> bool:
        return True

    async def start(self, context: RoleContext) -> None:
        serving = WorkerServing(1024, "hub.max_message_bytes")
        self.listener = await context.serve_workers(self, self.settings[PORT], serving)

    async def stop(self) -> None:
        await self.listener.close()

    def ready(self) -> bool:
        return True


class Inline:
    @hookimpl
    def trine_add_settings(self, registry: SettingsRegistry) -> None:
        registry.add(PORT)

    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("hub", HubRole)

    @hookimpl
    def trine_register_transports(self, registry: TransportRegistry) -> None:
        registry.add_transport(LoopTransport.scheme, LoopTransport)
        registry.add_transport(PlainTransport.scheme, PlainTransport)


def settings(address: str) -> Settings:
    return Settings({TARGET: "hub", PORT: address})


async def test_the_worker_port_is_served_by_the_transport_of_its_scheme() -> None:
    LoopTransport.served.clear()
    runtime = Runtime(settings("loop://port-1"), extra_plugins=(Inline(),))
    await runtime.start()
    role = runtime.roles["hub"]
    try:
        [(hub, address, serving)] = LoopTransport.served
        assert (hub, address, serving.max_message_bytes) == (role, "loop://port-1", 1024)
        assert role.listener.address == "loop://port-1"
    finally:
        await runtime.stop()
    assert role.listener.closed


async def test_a_scheme_no_transport_provides_is_a_boot_error_naming_the_known_ones() -> None:
    runtime = Runtime(settings("nats://q"), extra_plugins=(Inline(),))
    with pytest.raises(ConfigError, match=r"unknown transport 'nats' \(known: .*loop"):
        await runtime.start()


async def test_a_transport_that_does_not_carry_workers_is_a_boot_error() -> None:
    runtime = Runtime(settings("plain://q"), extra_plugins=(Inline(),))
    with pytest.raises(ConfigError, match="transport 'plain' does not carry workers"):
        await runtime.start()


async def test_a_context_without_a_runtime_serves_no_worker_port() -> None:
    context = RoleContext(Settings(), None)  # type: ignore[arg-type]  # as a test builds one
    with pytest.raises(ConfigError, match="no transports"):
        await context.serve_workers(
            HubRole(Settings()), "loop://x", WorkerServing(1, "hub.max_message_bytes")
        )


def test_a_worker_address_without_a_scheme_is_grpc() -> None:
    assert worker_address("127.0.0.1:7481") == "grpc://127.0.0.1:7481"
    assert worker_address(" [::1]:7481 ") == "grpc://[::1]:7481"
    assert worker_address("tcp://h:1") == "tcp://h:1"
