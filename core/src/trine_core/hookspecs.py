"""The hooks a trine plugin can implement.

Plugins are modules (or objects) named by an entry point: ``trine.roles`` (the entry point's name
is the role's), ``trine.transports`` (its name is the address scheme), ``trine.plugins``
(observers such as metrics or tracing, enabled by the ``plugins`` setting) and ``trine.commands``
(its name is a command of the ``trine`` program, as in ``trine runs``). Implement hooks with
:data:`hookimpl`::

    from trine_core import hookimpl

    @hookimpl
    def trine_register_roles(registry):
        registry.add_role("engine", EngineRole)

Every hook is synchronous and called with keyword arguments. The registration hooks run once per
boot for each plugin, in load order (inline plugins first, then installed ones by name); what they
register has async ``start``/``stop``. Hook names start with ``trine_``; implementing a hook that
does not exist (a typo) fails at boot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import pluggy

if TYPE_CHECKING:
    from trine_core.registry import CommandRegistry, RoleRegistry, TransportRegistry
    from trine_core.roles import Role, RoleContext
    from trine_core.settings import Settings, SettingsRegistry

PROJECT = "trine"
ASGIApp: TypeAlias = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
"""An ASGI application: ``await app(scope, receive, send)`` (what :func:`trine_http_apps` gives)."""
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Registration: once per boot, for each loaded plugin, before any setting is read
# ---------------------------------------------------------------------------------------------


@hookspec
def trine_add_settings(registry: SettingsRegistry) -> None:
    """Declare the settings this plugin reads.

    Called once per boot on every loaded plugin, before the command line, the environment and the
    config file are read: each declared :class:`~trine_core.settings.Setting` gets its flag,
    ``TRINE_…`` variable and config-file key from the declaration, with the same precedence as
    core's own (flags > environment > file > default).

    :param registry: call ``registry.add(*settings)``; a key two plugins declare is a boot error
        naming both.
    :return: nothing.
    """


@hookspec
def trine_register_roles(registry: RoleRegistry) -> None:
    """Register the roles this plugin provides.

    Called once per boot on every loaded plugin, before the target is resolved.

    :param registry: call ``registry.add_role(name, factory)`` for each role; ``factory`` is
        called with the :class:`~trine_core.settings.Settings` and returns a
        :class:`~trine_core.roles.Role`. A name two plugins register is a boot error naming both.
    :return: nothing.
    """


@hookspec
def trine_register_transports(registry: TransportRegistry) -> None:
    """Register the transports this plugin provides.

    Called once per boot on every loaded plugin, before any need is wired.

    :param registry: call ``registry.add_transport(scheme, factory)``; ``factory`` is called with
        the :class:`~trine_core.settings.Settings` and returns a
        :class:`~trine_core.roles.Transport` serving addresses ``<scheme>://…``.
    :return: nothing.
    """


@hookspec
def trine_register_commands(registry: CommandRegistry) -> None:
    """Register the commands this plugin adds to the ``trine`` program (``trine runs list``…).

    Called when ``trine`` runs with a first argument that is not a flag, never when roles boot:
    on the inline plugins, then, unless one registered the command, on the plugin named by the
    ``trine.commands`` entry point of that name (the entry point's name is the command's, as
    ``trine <name>`` spells it; one plugin may be named by several). Nothing else is loaded, so
    a command starts fast and works where no role is installed.

    :param registry: call ``registry.add_command(name, command)``; ``command(prog, argv)`` gets
        the program name for usage lines (``"trine runs"``) and the arguments after the
        command's name, and returns the process's exit code. A name two plugins register is an
        error naming both.
    :return: nothing.
    """


# ---------------------------------------------------------------------------------------------
# Wiring: while the runtime works out where each contract is
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def trine_contract_address(contract: type, settings: Settings) -> str | None:
    """Where ``contract`` is served for roles in other processes.

    Called at boot for a need (or a want: ``Role.wants``) that no role of this process serves
    and that ``[connect]`` does not place (the answer is dialled; a want with no answer is left
    unwired), and for each contract a role of this process serves when the process does not run
    every role (``--target`` other than ``all``: the contract is also served at the answer).
    The plugin of the role that provides the contract answers, e.g. the engine's: ``grpc://`` +
    its ``engine_addr`` for ``Backend`` and ``Dispatcher``. First answer wins.

    :param contract: the contract class (``Backend``…).
    :param settings: the process's settings.
    :return: an address ``scheme://…``, or None when this plugin does not provide ``contract``.
    """


# ---------------------------------------------------------------------------------------------
# Lifecycle: for observers (metrics, tracing, audit); called on every plugin that implements them
# ---------------------------------------------------------------------------------------------


@hookspec
def trine_role_started(name: str, role: Role, context: RoleContext) -> None:
    """A role finished ``start`` and its contracts are served.

    Called once per role, in start order.

    :param name: the role's name (``"engine"``, ``"gateway"``…).
    :param role: the role object (a plugin may know its concrete type and read from it).
    :param context: the role's context: settings, logger, wired needs, what it provided.
    :return: nothing.
    """


@hookspec
def trine_runtime_started(settings: Settings, roles: Sequence[str]) -> None:
    """Every role of this process is started and serving.

    Called once per boot, after the last ``trine_role_started``, on the runtime's event loop (an
    observer may start tasks on it, and stop them in ``trine_runtime_stopped``); not called when
    boot failed.

    :param settings: the settings the runtime runs with.
    :param roles: the names of the roles running here, in start order.
    :return: nothing.
    """


@hookspec
def trine_role_stopped(name: str, role: Role) -> None:
    """A role finished ``stop`` (also after a failed boot, for each role that had started).

    Called once per started role, in reverse start order.

    :param name: the role's name.
    :param role: the role object.
    :return: nothing.
    """


@hookspec
def trine_runtime_stopped(settings: Settings) -> None:
    """The runtime stopped every role and closed its transports; the process is about to exit.

    Called once, after the last ``trine_role_stopped``, on the runtime's event loop; not called
    when no role ever started.

    :param settings: the settings the runtime ran with.
    :return: nothing.
    """


# ---------------------------------------------------------------------------------------------
# HTTP: for observers that serve something over the gateway's port (metrics)
# ---------------------------------------------------------------------------------------------


@hookspec
def trine_http_apps(settings: Settings) -> Mapping[str, ASGIApp] | None:
    """ASGI applications to mount on the gateway's HTTP server, by path (``{"/metrics": app}``).

    Called by a role that serves HTTP (the gateway) while it starts, through
    :meth:`~trine_core.roles.RoleContext.http_apps`; not called in a process without one, so a
    plugin that must be reachable everywhere also listens on an address of its own (as
    ``trine-metrics`` does with ``[metrics] addr``). Each app gets every request whose path is
    the given one or below it, and runs on the runtime's event loop. Core depends on no web
    framework: the app is plain ASGI.

    :param settings: the process's settings.
    :return: apps by path (starting with ``/``), or None. A path two plugins mount is a boot
        error naming it.
    """
