"""The hooks a trine plugin can implement.

Plugins are modules (or objects) named by an entry point in the ``trine.roles`` or
``trine.transports`` group. The entry point's *name* is the role or scheme it provides, so boot
imports only the plugins the target selects. Implement hooks with :data:`hookimpl`::

    from trine_core import hookimpl

    @hookimpl
    def trine_register_roles(registry):
        registry.add_role("engine", EngineRole)

Hooks are synchronous and run only at boot; what they register has async ``start``/``stop``.
Hook names start with ``trine_``; an implementation of an unknown hook fails at boot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from trine_core.registry import RoleRegistry, TransportRegistry
    from trine_core.roles import RoleContext
    from trine_core.settings import Settings

PROJECT = "trine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Registration: called once per boot, after the selected plugins are imported
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Lifecycle: observers (metrics, tracing, audit)
# ---------------------------------------------------------------------------------------------


@hookspec
def trine_role_started(name: str, context: RoleContext) -> None:
    """A role finished ``start`` and is serving.

    Called once per role, in start order, after its contracts are exposed.

    :param name: the role's name (``"engine"``, ``"gateway"``…).
    :param context: the role's context: settings, logger, wired needs.
    :return: nothing.
    """


@hookspec
def trine_shutdown(settings: Settings) -> None:
    """The runtime stopped every role and is about to exit.

    Called once, after the last role's ``stop``; not called when boot failed.

    :param settings: the settings the runtime ran with.
    :return: nothing.
    """
