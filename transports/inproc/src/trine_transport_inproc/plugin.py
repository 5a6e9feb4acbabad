"""The in-process transport: a contract's consumer gets the provider's own object.

Nothing is serialized; ``await backend.start_run(request)`` is a plain method call on the
engine's object. Addresses are ``inproc://`` or ``inproc://NAME`` to keep several providers
apart. The directory of served objects belongs to one runtime (one transport instance per boot).
"""

from __future__ import annotations

from typing import ClassVar, TypeVar, cast

from trine_core import ConfigError, Settings, TransportRegistry, contract_name, hookimpl

T = TypeVar("T")


class InprocTransport:
    scheme: ClassVar[str] = "inproc"

    def __init__(self, settings: Settings | None = None) -> None:
        self._served: dict[tuple[type, str], object] = {}

    async def connect(self, contract: type[T], address: str) -> T:
        try:
            return cast(T, self._served[(contract, address)])
        except KeyError:
            raise ConfigError(
                f"nothing in this process serves {contract_name(contract)} at {address}: run "
                f"the role that provides it here, or connect to it with grpc://host:port"
            ) from None

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        self._served[(contract, address)] = implementation

    async def close(self) -> None:
        self._served.clear()


@hookimpl
def trine_register_transports(registry: TransportRegistry) -> None:
    registry.add_transport(InprocTransport.scheme, InprocTransport)
