"""Boot: resolve the target into roles, order them, wire every need to a provider, start, stop.

Core knows no role, no transport and no address. The order follows what roles serve and need: a
role starts after every role of this process that serves a contract it needs (ties keep the
target's order), and roles stop in reverse. A need is wired to the address ``[connect]`` names for
its contract; else, when a role of this process serves it, to that role's own object (an
in-process call, nothing serialized, no transport involved); else to where the plugin providing
the contract says it is served (``trine_contract_address``). A contract served here is also served
at its ``[connect]`` address, and — when this process does not run every role — where its plugin
says other processes will look for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from trine_core.contracts import Contracts, contract_name
from trine_core.errors import ConfigError
from trine_core.logging import get_logger
from trine_core.plugins import ALL, ROLES_GROUP, TRANSPORTS_GROUP, PluginSet
from trine_core.roles import Role, RoleContext, Transport
from trine_core.settings import PLUGINS, TARGET, Settings

LOCAL = "local"
"""How the boot log shows a need wired to a role of the same process (no address)."""


def role_names(target: str, known: Sequence[str]) -> list[str]:
    """The target's role names: ``all`` is every registered role, in registration order."""
    names = [part.strip() for part in target.split(",") if part.strip()]
    if not names:
        raise ConfigError("--target names no role")
    if ALL in names:
        names = [n for n in names if n != ALL] + [n for n in known if n not in names]
    return list(dict.fromkeys(names))


def runs_all(target: str) -> bool:
    """Whether the target asks for every role (``all``, maybe with inline ones besides)."""
    return ALL in (part.strip() for part in target.split(","))


def start_order(roles: dict[str, Role]) -> list[str]:
    """Providers before the roles that need them; otherwise the given order. A cycle is an
    error naming its roles."""
    providers = {contract: name for name, role in roles.items() for contract in role.serves}
    waiting = {
        name: {providers[c] for c in role.needs if c in providers} - {name}
        for name, role in roles.items()
    }
    order: list[str] = []
    while waiting:
        ready = next((name for name, deps in waiting.items() if not deps - set(order)), None)
        if ready is None:
            raise ConfigError(f"roles need each other in a cycle: {', '.join(waiting)}")
        order.append(ready)
        del waiting[ready]
    return order


class Runtime:
    """The roles of one process, wired. ``extra_plugins`` are registered before the installed
    plugins and take precedence over them (tests and embedders add inline plugins this way)."""

    def __init__(
        self,
        settings: Settings,
        extra_plugins: Iterable[object] = (),
        *,
        plugins: PluginSet | None = None,
    ) -> None:
        self.settings = settings
        self.log = get_logger("runtime")
        self._extra = tuple(extra_plugins)
        self.plugins = plugins
        self.roles: dict[str, Role] = {}
        self._started: list[str] = []
        self._transports: dict[str, Transport] = {}

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        plugins = self.plugins = self.plugins or PluginSet.load(self._extra, self.settings[PLUGINS])
        target = self.settings[TARGET]
        if runs_all(target):  # every installed role: a broken one must say so
            for failed in plugins.failed(ROLES_GROUP):
                plugins.require(ROLES_GROUP, failed)
        names = role_names(target, plugins.roles.names())
        for name in names:
            plugins.require(ROLES_GROUP, name)
            factory = plugins.roles.get(name)
            if factory is None:
                known = ", ".join(plugins.roles.names()) or "none"
                raise ConfigError(f"unknown role {name!r} (known: {known})")
            self.roles[name] = factory(self.settings)
        order = start_order(self.roles)
        self.roles = {name: self.roles[name] for name in order}
        served = {contract for role in self.roles.values() for contract in role.serves}
        dialled: dict[tuple[str, type], str | None] = {
            (name, contract): self._dial_address(contract, served)
            for name, role in self.roles.items()
            for contract in role.needs
        }
        exposed = {contract: self._exposed(contract) for contract in served}
        provided = Contracts()
        for name, role in self.roles.items():
            needs = Contracts()
            for contract in sorted(role.needs, key=contract_name):
                address = dialled[(name, contract)]
                if address is None:
                    needs.add(contract, provided.get(contract))
                else:
                    transport = await self._transport(address)
                    needs.add(contract, await transport.connect(contract, address))
            context = RoleContext(self.settings, get_logger(name), needs, self.ready)
            await role.start(context)
            self._started.append(name)
            for contract in sorted(role.serves, key=contract_name):
                if contract not in context.provided:
                    raise ConfigError(
                        f"role {name!r} serves {contract_name(contract)} but did not provide it"
                    )
                implementation: object = context.provided.get(contract)
                provided.add(contract, implementation)
                for address in exposed[contract]:
                    transport = await self._transport(address)
                    await transport.serve(contract, implementation, address)
            plugins.manager.hook.trine_role_started(name=name, role=role, context=context)
        plugins.manager.hook.trine_runtime_started(settings=self.settings, roles=list(self.roles))
        self.log.info(
            "trine started",
            roles=list(self.roles),
            wiring={f"{r}.{contract_name(c)}": a or LOCAL for (r, c), a in dialled.items()},
            serving={contract_name(c): a for c, a in exposed.items() if a},
        )

    def _dial_address(self, contract: type, served: set[type]) -> str | None:
        """Where a need is dialled; None: the local provider's own object."""
        name = contract_name(contract)
        address = self.settings.connect.get(name)
        if address:
            return address
        if contract in served:
            return None
        assert self.plugins is not None
        found = self.plugins.manager.hook.trine_contract_address(
            contract=contract, settings=self.settings
        )
        if not found:
            raise ConfigError(
                f"no role of this process serves {name}, and no installed plugin says where it "
                f'is served: run its role here, or set [connect] {name} = "scheme://…"'
            )
        return str(found)

    def _exposed(self, contract: type) -> list[str]:
        addresses = []
        configured = self.settings.connect.get(contract_name(contract))
        if configured:
            addresses.append(configured)
        if not runs_all(self.settings[TARGET]):
            assert self.plugins is not None
            public = self.plugins.manager.hook.trine_contract_address(
                contract=contract, settings=self.settings
            )
            if public:
                addresses.append(str(public))
        return list(dict.fromkeys(addresses))

    async def _transport(self, address: str) -> Transport:
        scheme, sep, _ = address.partition("://")
        if not sep:
            raise ConfigError(f"address {address!r} has no scheme:// (e.g. grpc://host:port)")
        transport = self._transports.get(scheme)
        if transport is None:
            assert self.plugins is not None
            self.plugins.require(TRANSPORTS_GROUP, scheme)
            factory = self.plugins.transports.get(scheme)
            if factory is None:
                known = ", ".join(self.plugins.transports.names()) or "none"
                raise ConfigError(f"unknown transport {scheme!r} (known: {known})")
            transport = self._transports[scheme] = factory(self.settings)
        return transport

    def ready(self) -> bool:
        return bool(self._started) and all(self.roles[name].ready() for name in self._started)

    async def stop(self) -> None:
        """Stop every started role in reverse order, then close the transports. A role or an
        observer that fails here is logged and the rest still stop (the engine's database lock
        must be released whatever an observer does)."""
        had_roles = bool(self._started)
        while self._started:
            name = self._started.pop()
            role = self.roles[name]
            try:
                await role.stop()
            except Exception:
                self.log.exception("role failed to stop cleanly", role=name)
            self._observe("trine_role_stopped", name=name, role=role)
        for transport in self._transports.values():
            await transport.close()
        self._transports.clear()
        if had_roles:
            self._observe("trine_runtime_stopped", settings=self.settings)

    def _observe(self, hook: str, **kwargs: object) -> None:
        if self.plugins is None:
            return
        try:
            getattr(self.plugins.manager.hook, hook)(**kwargs)
        except Exception:
            self.log.exception("an observer failed", hook=hook)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Start, wait for ``stop``, stop."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
