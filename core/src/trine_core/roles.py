"""What a role and a transport are, as the resolver sees them.

A role (gateway, engine, coordinator, or a third party's) declares which contracts it ``serves``
and which it ``needs``; the resolver starts roles in a fixed order and hands each one a
:class:`RoleContext` through which its needs are already wired. A transport turns an address
(``inproc://``, ``grpc://host:port``) into a client for a contract, and serves a local
implementation at an address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import structlog

from trine_core.settings import Settings


class Role(Protocol):
    """A part of the runtime that a process can run. Constructed with the settings, then started."""

    name: ClassVar[str]
    serves: ClassVar[frozenset[str]]
    """Contract kinds (``"backend"``, ``"dispatcher"``) this role implements once started."""
    needs: ClassVar[frozenset[str]]
    """Contract kinds this role calls; each is wired before ``start``."""

    async def start(self, context: RoleContext) -> None:
        """Open resources and listen. Raise :class:`~trine_core.errors.ConfigError` for a problem
        the operator must fix (port in use, bad data dir): boot prints it as one line."""
        ...

    async def stop(self) -> None:
        """Release everything ``start`` took; called in reverse start order, also after a failed
        start of a later role."""
        ...

    def provide(self, kind: str) -> object:
        """The local implementation of ``kind`` (one of ``serves``); called after ``start``."""
        ...

    def ready(self) -> bool:
        """Whether the role can do its job now (its peers are reachable)."""
        ...


class Transport(Protocol):
    """Carries contracts for one address scheme."""

    scheme: ClassVar[str]

    async def connect(self, kind: str, address: str) -> object:
        """A client for contract ``kind`` at ``address``, with the contract's methods."""
        ...

    async def serve(self, kind: str, implementation: object, address: str) -> None:
        """Expose a local implementation of ``kind`` at ``address``."""
        ...

    async def close(self) -> None:
        """Stop serving and close clients."""
        ...


RoleFactory = Callable[[Settings], Role]
TransportFactory = Callable[[Settings], Transport]


@dataclass
class RoleContext:
    """What a starting role gets from the runtime: settings, a logger, and its wired needs."""

    settings: Settings
    log: structlog.stdlib.BoundLogger
    wired: dict[str, object] = field(default_factory=dict)
    roles: dict[str, Any] = field(default_factory=dict)
    """The roles running in this process, by name (for readiness reporting)."""

    def need(self, kind: str) -> Any:
        """The client for a contract this role declared in ``needs``."""
        try:
            return self.wired[kind]
        except KeyError:
            raise KeyError(f"{kind!r} was not declared in this role's needs") from None
