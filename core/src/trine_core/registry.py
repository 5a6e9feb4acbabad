"""Registries that plugins fill from the registration hooks (tox's idea: the plugin adds what it
provides by name; the runtime looks names up). Two plugins claiming one name is a boot error that
names both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from trine_core.errors import ConfigError
from trine_core.roles import RoleFactory, TransportFactory

F = TypeVar("F")

Command = Callable[[str, Sequence[str]], int]
"""A command of the ``trine`` program: called with the program name for usage lines
(``"trine runs"``) and the arguments after the command's name; returns the exit code."""


class _Registry(Generic[F]):
    def __init__(self, what: str) -> None:
        self.what = what
        self.factories: dict[str, F] = {}
        self.owners: dict[str, str] = {}
        self.current_plugin = "?"
        """Who registers now: set by the runtime around each plugin's registration hook."""

    def _add(self, name: str, factory: F) -> None:
        if name in self.factories:
            raise ConfigError(
                f"{self.what} {name!r} is provided by two plugins: "
                f"{self.owners[name]} and {self.current_plugin}"
            )
        self.factories[name] = factory
        self.owners[name] = self.current_plugin

    def get(self, name: str) -> F | None:
        return self.factories.get(name)

    def names(self) -> list[str]:
        """In registration order: inline plugins first, then installed ones by name."""
        return list(self.factories)


class RoleRegistry(_Registry[RoleFactory]):
    """Handed to :func:`trine_core.hookspecs.trine_register_roles`."""

    def __init__(self) -> None:
        super().__init__("role")

    def add_role(self, name: str, factory: RoleFactory) -> None:
        """Make a role available to ``--target`` under ``name``."""
        self._add(name, factory)


class TransportRegistry(_Registry[TransportFactory]):
    """Handed to :func:`trine_core.hookspecs.trine_register_transports`."""

    def __init__(self) -> None:
        super().__init__("transport")

    def add_transport(self, scheme: str, factory: TransportFactory) -> None:
        """Make a transport available for addresses ``<scheme>://…``."""
        self._add(scheme, factory)


class CommandRegistry(_Registry[Command]):
    """Handed to :func:`trine_core.hookspecs.trine_register_commands`."""

    def __init__(self) -> None:
        super().__init__("command")

    def add_command(self, name: str, command: Command) -> None:
        """Make ``trine <name> ...`` call ``command("trine <name>", [...])``."""
        self._add(name, command)
