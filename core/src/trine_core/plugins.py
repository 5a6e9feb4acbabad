"""Finding and loading plugins from entry points.

A fresh plugin manager per boot (never a global one), so tests and repeated boots start clean.
Entry points are scanned without importing; only the plugins a boot selects are imported, and an
import failure becomes one :class:`ConfigError` naming the distribution, its version and the cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import pluggy

from trine_core import hookspecs
from trine_core.errors import ConfigError

ROLES_GROUP = "trine.roles"
TRANSPORTS_GROUP = "trine.transports"


def new_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def available(group: str) -> dict[str, EntryPoint]:
    """Installed entry points of ``group`` by name, not imported. Two distributions claiming one
    name is an error naming both (a leftover ``.dist-info`` is the usual cause)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in found and found[ep.name].value != ep.value:
            raise ConfigError(
                f"{group} {ep.name!r} is provided twice: by {_dist(found[ep.name])} "
                f"({found[ep.name].value}) and by {_dist(ep)} ({ep.value})"
            )
        found[ep.name] = ep
    return found


def load(manager: pluggy.PluginManager, group: str, names: Iterable[str], what: str) -> None:
    """Import and register the plugins of ``group`` named ``names``."""
    eps = available(group)
    for name in names:
        if manager.get_plugin(f"{group}:{name}") is not None:
            continue
        ep = eps.get(name)
        if ep is None:
            known = ", ".join(sorted(eps)) or "none installed"
            raise ConfigError(f"unknown {what} {name!r} (known: {known})")
        try:
            plugin = ep.load()
        except Exception as exc:  # any import failure is reported the same way, with its cause
            raise ConfigError(
                f"{what} plugin {name!r} from {_dist(ep)} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        manager.register(plugin, name=f"{group}:{name}")
    manager.check_pending()


def _dist(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value
