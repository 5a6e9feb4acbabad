"""The in-process transport: a contract's consumer gets the provider's own object.

Nothing is serialized; ``await backend.start_run(request)`` is a plain method call on the
engine. Addresses are ``inproc://`` or ``inproc://NAME`` to keep several providers apart.
The directory of served objects belongs to one runtime (one transport instance per boot).
"""

from __future__ import annotations

from typing import ClassVar

from trine_core import ConfigError, Settings, TransportRegistry, hookimpl


class InprocTransport:
    scheme: ClassVar[str] = "inproc"

    def __init__(self, settings: Settings | None = None) -> None:
        self._served: dict[tuple[str, str], object] = {}

    async def connect(self, kind: str, address: str) -> object:
        try:
            return self._served[(kind, address)]
        except KeyError:
            raise ConfigError(
                f"nothing in this process serves {kind} at {address}: run the role that "
                f"provides it here, or connect to it with grpc://host:port"
            ) from None

    async def serve(self, kind: str, implementation: object, address: str) -> None:
        self._served[(kind, address)] = implementation

    async def close(self) -> None:
        self._served.clear()


@hookimpl
def trine_register_transports(registry: TransportRegistry) -> None:
    registry.add_transport(InprocTransport.scheme, InprocTransport)
