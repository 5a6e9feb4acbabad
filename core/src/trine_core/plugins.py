"""Finding, loading and registering plugins: one :class:`PluginSet` per boot (never a global one),
so tests and repeated boots start clean.

Every installed role and transport plugin is loaded, because each may declare settings (which the
command line, the environment and the config file must know before anything is read) and a role
plugin answers where its contracts are served. A plugin that fails to import does not stop a boot
that does not use it: the failure is kept, and becomes one :class:`ConfigError` naming the
distribution, its version and the cause only when the boot selects that role or scheme.
Observer plugins (``trine.plugins``) are loaded only when enabled by the ``plugins`` setting.
Command plugins (``trine.commands``) are never loaded at boot: :func:`load_command` loads the one
``trine <command>`` names.

Inline plugins (``extra``: tests, embedders) are registered first and take precedence: an
installed plugin whose entry-point name an inline one already provides is not loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points

import pluggy

from trine_core import hookspecs
from trine_core.errors import ConfigError
from trine_core.registry import Command, CommandRegistry, RoleRegistry, TransportRegistry
from trine_core.settings import CORE_SETTINGS, SettingsRegistry

ROLES_GROUP = "trine.roles"
TRANSPORTS_GROUP = "trine.transports"
OBSERVERS_GROUP = "trine.plugins"
COMMANDS_GROUP = "trine.commands"
ALL = "all"
NONE = "none"


class PluginSet:
    """The plugins of one boot, and what their registration hooks registered."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.settings = SettingsRegistry()
        self.roles = RoleRegistry()
        self.transports = TransportRegistry()
        self.failures: dict[tuple[str, str], str] = {}
        """Import failures of plugins not (yet) needed, by (group, entry-point name)."""
        self.settings.current_plugin = "trine-core"
        self.settings.add(*CORE_SETTINGS)

    @classmethod
    def load(cls, extra: Iterable[object] = (), observers: Sequence[str] = (ALL,)) -> PluginSet:
        """Register ``extra``, then every installed role and transport plugin, then the observers
        ``observers`` names (``all``, ``none``, or entry-point names)."""
        plugins = cls()
        for index, plugin in enumerate(extra):
            plugins._register(plugin, f"inline:{index}", _describe(plugin))
        for group, registry in (
            (ROLES_GROUP, plugins.roles),
            (TRANSPORTS_GROUP, plugins.transports),
        ):
            for name, ep in sorted(available(group).items()):
                if registry.get(name) is None:
                    plugins._load(group, name, ep, strict=False)
        plugins._load_observers(observers)
        return plugins

    def failed(self, group: str) -> list[str]:
        """Names of the plugins of ``group`` that failed to import."""
        return [name for g, name in self.failures if g == group]

    def require(self, group: str, name: str) -> None:
        """Raise the import failure of a plugin this boot needs, if it had one."""
        failure = self.failures.get((group, name))
        if failure is not None:
            raise ConfigError(failure)

    def _load_observers(self, wanted: Sequence[str]) -> None:
        eps = available(OBSERVERS_GROUP)
        names = [n.strip() for n in wanted if n.strip()]
        if not names or names == [NONE]:
            return
        if ALL in names:
            names = sorted(eps)
        for name in names:
            ep = eps.get(name)
            if ep is None:
                known = ", ".join(sorted(eps)) or "none installed"
                raise ConfigError(f"unknown plugin {name!r} in plugins (known: {known})")
            self._load(OBSERVERS_GROUP, name, ep, strict=True)

    def _load(self, group: str, name: str, ep: EntryPoint, *, strict: bool) -> None:
        try:
            plugin = ep.load()
        except Exception as exc:  # any import failure is reported the same way, with its cause
            failure = (
                f"{_KINDS[group]} plugin {name!r} from {_dist(ep)} failed to import: "
                f"{type(exc).__name__}: {exc}"
            )
            if strict:
                raise ConfigError(failure) from exc
            self.failures[(group, name)] = failure
            return
        self._register(plugin, f"{group}:{name}", _dist(ep))

    def _register(self, plugin: object, name: str, owner: str) -> None:
        """Register ``plugin`` and call its registration hooks (and only its), through pluggy."""
        try:
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:  # ValueError: registered twice
            raise ConfigError(f"plugin {owner}: {exc}") from None
        others = [p for p in self.manager.get_plugins() if p is not plugin]
        for registry, hook in (
            (self.settings, "trine_add_settings"),
            (self.roles, "trine_register_roles"),
            (self.transports, "trine_register_transports"),
        ):
            registry.current_plugin = owner
            self.manager.subset_hook_caller(hook, remove_plugins=others)(registry=registry)


_KINDS = {
    ROLES_GROUP: "role",
    TRANSPORTS_GROUP: "transport",
    OBSERVERS_GROUP: "observer",
    COMMANDS_GROUP: "command",
}


def load_command(name: str, extra: Iterable[object] = ()) -> Command | None:
    """The command ``trine <name>`` runs, or None when nothing provides it.

    Its registration hook is called on the inline plugins ``extra`` first; unless one of them
    registered ``name``, the ``trine.commands`` entry point ``name`` is loaded and registered too.
    No other plugin is loaded. A plugin that fails to import, or that is named for ``name`` and
    does not register it, is a :class:`ConfigError` naming its distribution.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = CommandRegistry()

    def register(plugin: object, key: str, owner: str) -> None:
        try:
            manager.register(plugin, name=key)
            manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise ConfigError(f"plugin {owner}: {exc}") from None
        registry.current_plugin = owner
        others = [p for p in manager.get_plugins() if p is not plugin]
        manager.subset_hook_caller("trine_register_commands", remove_plugins=others)(
            registry=registry
        )

    for index, plugin in enumerate(extra):
        register(plugin, f"inline:{index}", _describe(plugin))
    command = registry.get(name)
    if command is not None:
        return command
    ep = available(COMMANDS_GROUP).get(name)
    if ep is None:
        return None
    try:
        plugin = ep.load()
    except Exception as exc:  # any import failure is reported the same way, with its cause
        raise ConfigError(
            f"command plugin {name!r} from {_dist(ep)} failed to import: {type(exc).__name__}: "
            f"{exc}"
        ) from exc
    register(plugin, f"{COMMANDS_GROUP}:{name}", _dist(ep))
    command = registry.get(name)
    if command is None:
        raise ConfigError(
            f"command plugin {name!r} from {_dist(ep)} did not register the command {name!r}"
        )
    return command


def command_names() -> list[str]:
    """The commands installed plugins provide (their ``trine.commands`` entry points), sorted,
    without importing anything."""
    return sorted({ep.name for ep in entry_points(group=COMMANDS_GROUP)})


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


def _dist(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value


def _describe(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__
