"""Boot: resolve the target into roles, wire every need to a provider, start, stop.

Roles start in a fixed order (providers before consumers: engine, coordinator, gateway, then any
other) and stop in reverse. Each need is dialled through the transport whose scheme its address
names; a contract served by a local role is served on ``inproc://`` (an in-process consumer gets
the object itself), at the address its consumers are told to dial, and over gRPC when roles run
in other processes.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pluggy

from trine_core import plugins
from trine_core.errors import ConfigError
from trine_core.logging import get_logger
from trine_core.protocols import BACKEND, DISPATCHER
from trine_core.registry import RoleRegistry, TransportRegistry
from trine_core.roles import Role, RoleContext, Transport
from trine_core.settings import Settings

START_ORDER = ("engine", "coordinator", "gateway")
_REGISTRATION_HOOK = {
    plugins.ROLES_GROUP: "trine_register_roles",
    plugins.TRANSPORTS_GROUP: "trine_register_transports",
}
R = TypeVar("R", RoleRegistry, TransportRegistry)
ALL = "all"
INPROC = "inproc://"
SPLIT_CONTRACTS = frozenset({BACKEND, DISPATCHER})


def role_names(settings: Settings) -> list[str]:
    names = settings.roles()
    if not names:
        raise ConfigError("--target names no role")
    if ALL in names:
        names = [n for n in names if n != ALL] + [n for n in START_ORDER if n not in names]
    rank = {name: i for i, name in enumerate(START_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda n: rank.get(n, len(rank)))


class Runtime:
    """The roles of one process, wired. ``extra_plugins`` are registered before the entry-point
    plugins (tests and embedders use it to add an inline plugin)."""

    def __init__(self, settings: Settings, extra_plugins: tuple[object, ...] = ()) -> None:
        self.settings = settings
        self.log = get_logger("runtime")
        self._extra = extra_plugins
        self._manager: pluggy.PluginManager | None = None
        self.roles: dict[str, Role] = {}
        self._started: list[Role] = []
        self._transports: dict[str, Transport] = {}
        self._transport_registry = TransportRegistry()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        manager = self._manager = plugins.new_plugin_manager()
        for plugin in self._extra:
            manager.register(plugin)
        manager.check_pending()
        names = role_names(self.settings)
        role_registry = self._registered(RoleRegistry, plugins.ROLES_GROUP, names, "role")
        for name in names:
            factory = role_registry.get(name)
            if factory is None:
                known = ", ".join(role_registry.names()) or "none"
                raise ConfigError(f"unknown role {name!r} (known: {known})")
            self.roles[name] = factory(self.settings)

        served = {kind: name for name, role in self.roles.items() for kind in role.serves}
        addresses: dict[tuple[str, str], str] = {}
        for name, role in self.roles.items():
            for kind in role.needs:
                address = self.settings.connect.get(kind) or (
                    INPROC if kind in served else f"grpc://{self.settings.engine_addr}"
                )
                addresses[(name, kind)] = address
        exposed = self._exposed_addresses(served)
        schemes = {address.split("://", 1)[0] for address in addresses.values()} | {"inproc"}
        schemes |= {a.split("://", 1)[0] for addresses in exposed.values() for a in addresses}
        self._transport_registry = self._registered(
            TransportRegistry, plugins.TRANSPORTS_GROUP, sorted(schemes), "transport"
        )

        for name, role in self.roles.items():
            context = RoleContext(
                settings=self.settings, log=get_logger(name), roles=dict(self.roles)
            )
            for kind in sorted(role.needs):
                context.wired[kind] = await self._connect(kind, addresses[(name, kind)], name)
            await role.start(context)
            self._started.append(role)
            for kind in sorted(role.serves):
                await (await self._transport("inproc")).serve(kind, role.provide(kind), INPROC)
                for address in exposed.get(kind, []):
                    transport = await self._transport(address.split("://", 1)[0])
                    await transport.serve(kind, role.provide(kind), address)
            manager.hook.trine_role_started(name=name, context=context)
        self.log.info(
            "trine started",
            roles=list(self.roles),
            wiring={f"{role}.{kind}": address for (role, kind), address in addresses.items()},
            serving=exposed,
        )

    def _exposed_addresses(self, served: dict[str, str]) -> dict[str, list[str]]:
        """Where each contract served here is served besides ``inproc://``: at the address the
        settings tell its consumers to dial (``--connect``), and, when this process does not run
        every built-in role, at ``grpc://`` + engine_addr for the roles in other processes (only
        ``backend`` and ``dispatcher``: what gRPC carries, and what the others dial there)."""
        split = not set(START_ORDER) <= set(self.roles)
        exposed: dict[str, list[str]] = {}
        for kind in served:
            addresses = [self.settings.connect.get(kind, INPROC)]
            if split and kind in SPLIT_CONTRACTS:
                addresses.append(f"grpc://{self.settings.engine_addr}")
            exposed[kind] = [a for a in dict.fromkeys(addresses) if a != INPROC]
        return exposed

    def _registered(self, registry_type: type[R], group: str, names: list[str], what: str) -> R:
        """A registry holding ``names``: what already-registered plugins (inline ones first)
        provide, plus the entry-point plugins imported for the names still missing."""
        assert self._manager is not None
        hook = _REGISTRATION_HOOK[group]
        registry = self._call_registration(hook, registry_type())
        missing = [name for name in names if registry.get(name) is None]
        if missing:
            plugins.load(self._manager, group, missing, what)
            registry = self._call_registration(hook, registry_type())
        return registry

    def _call_registration(self, hook: str, registry: R) -> R:
        assert self._manager is not None
        for impl in reversed(getattr(self._manager.hook, hook).get_hookimpls()):
            registry.current_plugin = self._manager.get_name(impl.plugin) or repr(impl.plugin)
            impl.function(registry=registry)
        return registry

    async def _transport(self, scheme: str) -> Transport:
        transport = self._transports.get(scheme)
        if transport is None:
            factory = self._transport_registry.get(scheme)
            if factory is None:
                known = ", ".join(self._transport_registry.names()) or "none"
                raise ConfigError(f"no transport plugin for scheme {scheme!r} (known: {known})")
            transport = self._transports[scheme] = factory(self.settings)
        return transport

    async def _connect(self, kind: str, address: str, role: str) -> object:
        if "://" not in address:
            raise ConfigError(f"{role}: address {address!r} for {kind} has no scheme://")
        transport = await self._transport(address.split("://", 1)[0])
        return await transport.connect(kind, address)

    def ready(self) -> bool:
        return all(role.ready() for role in self._started)

    async def stop(self) -> None:
        while self._started:
            role = self._started.pop()
            try:
                await role.stop()
            except Exception:
                self.log.exception("role failed to stop cleanly", role=role.name)
        for transport in self._transports.values():
            await transport.close()
        self._transports.clear()
        if self._manager is not None and self.roles:
            self._manager.hook.trine_shutdown(settings=self.settings)
        self._manager = None

    async def run_until(self, stop: asyncio.Event) -> None:
        """Start, wait for ``stop``, stop."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
