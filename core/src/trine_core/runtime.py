"""Boot: resolve the target into roles, order them, wire every need to a provider, start, stop.

Core knows no role, no transport and no address. The order follows what roles serve and need: a
role starts after every role of this process that serves a contract it needs or wants (ties keep
the target's order), and roles stop in reverse. A need is wired to the address ``[connect]``
names for its contract; else, when a role of this process serves it, to that role's own object
(an in-process call, nothing serialized, no transport involved); else to where the plugin
providing the contract says it is served (``trine_contract_address``). A contract served here is
also served at its ``[connect]`` address, and — when this process does not run every role —
where its plugin says other processes will look for it.

A contract a role *wants* (``Role.wants``, optional) is wired the same way, except that finding
no provider leaves it unwired rather than failing the boot, and that ``[connect]`` may name several
addresses for it (comma-separated): the role gets one client per address. A contract is not
served at a ``[connect]`` entry naming several addresses: those are other processes' addresses.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence

from trine_core.contracts import Contracts, contract_name
from trine_core.errors import ConfigError, RoleFailed
from trine_core.hookspecs import ASGIApp
from trine_core.logging import get_logger
from trine_core.loops import LoopThread, across, app_across
from trine_core.plugins import ALL, ROLES_GROUP, TRANSPORTS_GROUP, PluginSet
from trine_core.roles import Role, RoleContext, Transport
from trine_core.settings import OWN_LOOP, PLUGINS, TARGET, Settings

LOCAL = "local"
"""How the boot log shows a need wired to a role of the same process (no address)."""
NONE = "none"
"""How the boot log shows a want nothing provides."""


def known_roles(names: Iterable[str]) -> str:
    """How a refusal names the roles it would have taken: ``known: a, b`` (or ``none``)."""
    return f"known: {', '.join(names) or 'none'}"


def wants_of(role: Role) -> frozenset[type]:
    """The contracts ``role`` wants (optional needs): its ``wants``, if it declares any."""
    wants: frozenset[type] = getattr(role, "wants", frozenset())
    return wants


def connect_addresses(settings: Settings, contract: type) -> list[str]:
    """The addresses ``[connect]`` names for ``contract``: none, one, or several
    (comma-separated)."""
    configured = settings.connect.get(contract_name(contract), "")
    return list(dict.fromkeys(a.strip() for a in configured.split(",") if a.strip()))


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
        name: {providers[c] for c in role.needs | wants_of(role) if c in providers} - {name}
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
        self.failure: RoleFailed | None = None
        """Why a role stopped the process (``RoleContext.fail``); None while none has."""
        self._failed = asyncio.Event()
        self._stop_timer: asyncio.TimerHandle | None = None
        self._threads: dict[str, LoopThread] = {}
        """The roles running on a loop of their own (``own_loop``), by name."""

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
                raise ConfigError(f"unknown role {name!r} ({known_roles(plugins.roles.names())})")
            self.roles[name] = factory(self.settings)
        order = start_order(self.roles)
        self.roles = {name: self.roles[name] for name in order}
        own_loops = self._own_loops()
        served = {contract for role in self.roles.values() for contract in role.serves}
        dialled: dict[tuple[str, type], str | None] = {
            (name, contract): self._dial_address(contract, served)
            for name, role in self.roles.items()
            for contract in role.needs
        }
        wanted_at: dict[tuple[str, type], list[str | None]] = {
            (name, contract): self._want_addresses(contract, served)
            for name, role in self.roles.items()
            for contract in wants_of(role)
        }
        exposed = {contract: self._exposed(contract) for contract in served}
        provided = Contracts()
        for name, role in self.roles.items():
            needs = Contracts()
            for contract in sorted(role.needs, key=contract_name):
                needs.add(contract, await self._wire(contract, dialled[(name, contract)], provided))
            wanted: dict[type, list[object]] = {
                contract: [
                    await self._wire(contract, address, provided)
                    for address in wanted_at[(name, contract)]
                ]
                for contract in sorted(wants_of(role), key=contract_name)
            }
            if name in own_loops:
                await self._start_on_own_loop(name, role, needs, wanted)
                self._started.append(name)
                continue
            context = RoleContext(
                self.settings,
                get_logger(name),
                needs,
                self.ready,
                wanted,
                http_apps=self._http_apps,
                fail=functools.partial(self.fail, name),
                transport_for=self._transport,
            )
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
        wiring = {f"{r}.{contract_name(c)}": a or LOCAL for (r, c), a in dialled.items()}
        for (r, c), addresses in wanted_at.items():
            shown = ", ".join(a or LOCAL for a in addresses)
            wiring[f"{r}.{contract_name(c)}"] = shown or NONE
        self.log.info(
            "trine started",
            roles=list(self.roles),
            wiring=wiring,
            serving={contract_name(c): a for c, a in exposed.items() if a},
            own_loop=sorted(own_loops),
        )

    def _own_loops(self) -> set[str]:
        """The roles of ``own_loop`` that run here, when other roles run here too. A name no
        installed role has is refused (a typo would otherwise go unnoticed: a role that is
        installed but runs in another process is skipped, so one setting serves every process)."""
        named = {n for n in self.settings[OWN_LOOP] if n and n != NONE}
        assert self.plugins is not None  # loaded by _start
        # A plugin that failed to import still names a role: the boot that needs it says why.
        installed = [*self.plugins.roles.names(), *self.plugins.failed(ROLES_GROUP)]
        unknown = sorted(named.difference(installed))
        if unknown:
            raise ConfigError(f"own_loop: unknown role {unknown[0]!r} ({known_roles(installed)})")
        own = {name for name in self.roles if name in named}
        if len(own) == len(self.roles):  # nothing else here for them to hold up
            return set()
        for name in sorted(own):
            serves = self.roles[name].serves
            if serves:
                served = ", ".join(sorted(contract_name(c) for c in serves))
                raise ConfigError(
                    f"own_loop: role {name!r} serves {served}, so it cannot run on a loop of its "
                    "own (only a role that serves no contract can)"
                )
        return own

    async def _start_on_own_loop(
        self, name: str, role: Role, needs: Contracts, wanted: dict[type, list[object]]
    ) -> None:
        """Start ``role`` on a thread and loop of its own: each need and want it is given runs
        its calls on this loop (trine_core.loops)."""
        home = asyncio.get_running_loop()
        thread = self._threads[name] = LoopThread(f"trine-{name}")
        remote = Contracts()
        for contract in sorted(role.needs, key=contract_name):
            remote.add(contract, across(contract, needs.get(contract), home))

        def apps() -> dict[str, ASGIApp]:
            return {path: app_across(app, home) for path, app in self._http_apps().items()}

        def fail(reason: str, after_s: float = 0.0) -> None:
            home.call_soon_threadsafe(self.fail, name, reason, after_s)

        context = RoleContext(
            self.settings,
            get_logger(name),
            remote,
            self.ready,
            {c: [across(c, p, home) for p in providers] for c, providers in wanted.items()},
            http_apps=apps,
            fail=fail,
        )
        await thread.run(role.start(context))

    async def _wire(self, contract: type, address: str | None, provided: Contracts) -> object:
        """The client of ``contract`` at ``address``; None: the local provider's own object."""
        if address is None:
            return provided.get(contract)
        transport = await self._transport(address)
        client: object = await transport.connect(contract, address)
        return client

    def _want_addresses(self, contract: type, served: set[type]) -> list[str | None]:
        """Where a want is dialled (None: the local provider's own object); empty: nowhere."""
        configured = connect_addresses(self.settings, contract)
        if configured:
            return list(configured)
        if contract in served:
            return [None]
        assert self.plugins is not None
        found = self.plugins.manager.hook.trine_contract_address(
            contract=contract, settings=self.settings
        )
        return [str(found)] if found else []

    def _dial_address(self, contract: type, served: set[type]) -> str | None:
        """Where a need is dialled; None: the local provider's own object."""
        name = contract_name(contract)
        configured = connect_addresses(self.settings, contract)
        if len(configured) > 1:
            raise ConfigError(
                f"[connect] {name} names {len(configured)} addresses; a role needs one {name} "
                f"(several are for a contract a role wants, such as worker_registry)"
            )
        if configured:
            return configured[0]
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
        configured = connect_addresses(self.settings, contract)
        if len(configured) == 1:  # several: other processes' addresses, not this one's
            addresses += configured
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

    def _http_apps(self) -> dict[str, ASGIApp]:
        """The observers' ``trine_http_apps`` answers, merged: what a role serving HTTP (the
        gateway) mounts. A path mounted twice, or not starting with ``/``, is a boot error."""
        assert self.plugins is not None
        apps: dict[str, ASGIApp] = {}
        for answer in self.plugins.manager.hook.trine_http_apps(settings=self.settings):
            for path, app in (answer or {}).items():
                if not path.startswith("/") or path in apps:
                    problem = "is mounted twice" if path in apps else "does not start with /"
                    raise ConfigError(f"trine_http_apps: HTTP path {path!r} {problem}")
                apps[path] = app
        return apps

    def ready(self) -> bool:
        return bool(self._started) and all(self.roles[name].ready() for name in self._started)

    async def stop(self) -> None:
        """Stop every started role in reverse order, then close the transports. A role or an
        observer that fails here is logged and the rest still stop (the engine's database lock
        must be released whatever an observer does)."""
        had_roles = bool(self._started)
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        while self._started:
            name = self._started.pop()
            role = self.roles[name]
            thread = self._threads.pop(name, None)
            try:
                await (role.stop() if thread is None else thread.run(role.stop()))
            except Exception:
                self.log.exception("role failed to stop cleanly", role=name)
            if thread is not None:
                await thread.close()
            self._observe("trine_role_stopped", name=name, role=role)
        while self._threads:  # a role whose start failed on its own loop
            await self._threads.popitem()[1].close()
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

    def fail(self, role: str, reason: str, after_s: float = 0.0) -> None:
        """A role cannot go on (``RoleContext.fail``): the failure is recorded now (the first
        reason wins) and, ``after_s`` later, ``run_until`` stops every role and raises
        :class:`RoleFailed`. An embedder that drives ``start``/``stop`` itself reads
        :attr:`failure`."""
        self.log.critical("role failed; stopping the process", role=role, reason=reason)
        if self.failure is None:
            self.failure = RoleFailed(reason, role=role)
        if self._stop_timer is None and self._started:
            loop = asyncio.get_running_loop()
            self._stop_timer = loop.call_later(max(0.0, after_s), self._failed.set)

    async def run_until(
        self, stop: asyncio.Event, *, started: Callable[[], None] | None = None
    ) -> None:
        """Start, call ``started`` (the ``trine`` program settles its heap there), wait for
        ``stop`` or a role's failure, stop; raise :class:`RoleFailed` after a role's failure."""
        await self.start()
        try:
            if started is not None:
                started()
            stopping = asyncio.ensure_future(stop.wait())
            failing = asyncio.ensure_future(self._failed.wait())
            try:
                await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                failing.cancel()
        finally:
            await self.stop()
        if self.failure is not None:
            raise self.failure
