"""What a role and a transport are, as the runtime sees them.

A role (gateway, engine, coordinator, or a third party's) declares the contracts it ``serves``
and ``needs``, by class, and may declare ``wants``: contracts it uses when something provides
them and does without otherwise. The runtime starts providers before the roles that need or want
them and hands each role a :class:`RoleContext` in which its needs (and wants) are already wired;
while starting, the role ``provide``s an implementation of every contract it serves. A
transport turns an address (``inproc://``, ``grpc://host:port``) into a client of a contract, and
serves a local implementation at an address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, Protocol, TypeVar, cast

import structlog

from trine_core.contracts import Contracts, contract_name
from trine_core.errors import ConfigError
from trine_core.hookspecs import ASGIApp
from trine_core.settings import Settings
from trine_core.worker_streams import (
    WorkerHub,
    WorkerListener,
    WorkerServing,
    WorkerTransport,
)
from trine_proto.addresses import worker_address

T = TypeVar("T")


class Role(Protocol):
    """A part of the runtime that a process can run. Built with the settings, then started.

    Optionally, a role also has ``wants: ClassVar[frozenset[type]]``: contracts it uses when one
    can be wired and does without otherwise (the gateway wants ``WorkerRegistry``: it boots with
    no coordinator). A want is wired as a need is (``[connect]``, a role of this process, the
    providing plugin's ``trine_contract_address``), except that finding nothing is no error, and
    that ``[connect]`` may name several addresses for it, comma-separated (or a TOML array): one
    provider each. The role reads them with :meth:`RoleContext.wanted`. (Not a member of this
    Protocol, so that roles without it still conform.)
    """

    name: ClassVar[str]
    serves: ClassVar[frozenset[type]]
    """Contracts (``Backend``…) this role implements once started: it ``provide``s each."""
    needs: ClassVar[frozenset[type]]
    """Contracts this role calls; each is wired before ``start`` (boot fails if one cannot be)."""

    async def start(self, context: RoleContext) -> None:
        """Open resources, listen, and provide what ``serves`` promises. Raise
        :class:`~trine_core.errors.ConfigError` for a problem the operator must fix (port in use,
        bad data dir): boot prints it as one line."""
        ...

    async def stop(self) -> None:
        """Release everything ``start`` took; called in reverse start order, also after a failed
        start of a later role."""
        ...

    def ready(self) -> bool:
        """Whether the role can do its job now (its peers are reachable)."""
        ...


class Transport(Protocol):
    """Carries contracts for one address scheme."""

    scheme: ClassVar[str]

    async def connect(self, contract: type[T], address: str) -> T:
        """A client of ``contract`` at ``address``: an object with the contract's methods."""
        ...

    async def serve(self, contract: type[T], implementation: T, address: str) -> None:
        """Expose a local implementation of ``contract`` at ``address``."""
        ...

    async def close(self) -> None:
        """Stop serving and close clients."""
        ...


RoleFactory = Callable[[Settings], Role]
TransportFactory = Callable[[Settings], Transport]


class RoleContext:
    """What a starting role gets from the runtime: settings, a logger, its wired needs, a place
    to provide what it serves, and the readiness of the whole process (for health checks)."""

    def __init__(
        self,
        settings: Settings,
        log: structlog.stdlib.BoundLogger,
        needs: Contracts | None = None,
        ready: Callable[[], bool] = lambda: True,
        wanted: Mapping[type, Sequence[object]] | None = None,
        *,
        http_apps: Callable[[], Mapping[str, ASGIApp]] | None = None,
        fail: Callable[[str, float], None] | None = None,
        transport_for: Callable[[str], Awaitable[Transport]] | None = None,
    ) -> None:
        """``transport_for``: the transport of an address's scheme (the runtime's, one per
        scheme); a context built without it (a plugin's own tests) serves no worker port."""
        self.settings = settings
        self.log = log
        self._needs = needs if needs is not None else Contracts()
        self._wanted = dict(wanted or {})
        self.provided = Contracts()
        self._ready = ready
        self._http_apps = http_apps
        self._fail = fail
        self._transport_for = transport_for

    def need(self, contract: type[T]) -> T:
        """The client of a contract this role declared in ``needs``."""
        try:
            return self._needs.get(contract)
        except KeyError:
            raise KeyError(
                f"{contract_name(contract)} was not declared in this role's needs"
            ) from None

    def wanted(self, contract: type[T]) -> list[T]:
        """The providers of a contract this role declared in ``wants``: none when nothing
        provides it (or the role did not declare it, or the context was built by hand without
        it, as a test may), one per address when ``[connect]`` names several."""
        return [cast(T, provider) for provider in self._wanted.get(contract, ())]

    def provide(self, contract: type[T], implementation: T) -> None:
        """Offer ``implementation`` of a contract this role declared in ``serves``."""
        self.provided.add(contract, implementation)

    async def serve_workers(
        self, hub: WorkerHub, address: str, serving: WorkerServing
    ) -> WorkerListener:
        """Listen for workers at ``address`` through the transport of its scheme (a bare
        ``host:port`` is ``grpc://``), handing each worker's stream to ``hub``. The role closes
        the listener when it stops. A scheme no transport provides, or whose transport does not
        carry workers, is a ``ConfigError`` naming the ones that do."""
        address = worker_address(address)
        if self._transport_for is None:
            raise ConfigError("this role context has no transports: it cannot serve workers")
        try:
            transport = await self._transport_for(address)
        except ConfigError as exc:  # no transport for the scheme: say what it was for
            raise ConfigError(f"workers' address {address}: {exc}") from None
        if not callable(getattr(transport, "serve_workers", None)):
            scheme = address.partition("://")[0]
            raise ConfigError(
                f"transport {scheme!r} does not carry workers (it has no serve_workers): give "
                "the worker address a scheme whose transport does, such as grpc://"
            )
        return await cast(WorkerTransport, transport).serve_workers(hub, address, serving)

    def fail(self, reason: str, after_s: float = 0.0) -> None:
        """Stop this process: the role cannot go on (the engine after a failed write). The
        failure counts at once; ``after_s`` later (meanwhile the role may still serve what it
        can: the engine answers reads) every role is stopped in order, and ``trine`` exits with
        status 1 printing ``trine: error:`` and ``reason`` (one line, for the operator and the
        supervisor that restarts it), also if a signal stopped it first. In a context built
        without a runtime (a plugin's own tests) the reason is only logged."""
        if self._fail is not None:
            self._fail(reason, after_s)
        else:
            self.log.critical("role failed", reason=reason)

    def process_ready(self) -> bool:
        """Whether every role of this process is ready (what ``/healthz`` reports)."""
        return self._ready()

    def http_apps(self) -> dict[str, ASGIApp]:
        """ASGI apps the observer plugins mount on this role's HTTP server, by path (their
        ``trine_http_apps`` answers: ``/metrics``). Empty when no observer mounts anything."""
        return dict(self._http_apps()) if self._http_apps is not None else {}
