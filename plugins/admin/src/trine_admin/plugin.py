"""The ``trine.commands`` entry points (``runs``, ``workers``, ``functions``, ``builds``,
``replay``) name this module: it registers the commands (core loads it only when ``trine`` runs
one of them)."""

from __future__ import annotations

import functools

from trine_admin.cli import COMMANDS, main
from trine_core import CommandRegistry, hookimpl


@hookimpl
def trine_register_commands(registry: CommandRegistry) -> None:
    for name in COMMANDS:
        registry.add_command(name, functools.partial(main, name))
