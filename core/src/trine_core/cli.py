"""``trine``: run one or more roles in this process until SIGTERM or SIGINT; or, when the first
argument is a word (``trine runs list``), run the command a plugin registered under it
(:func:`trine_core.hookspecs.trine_register_commands`; ``trine.commands`` entry points).

The command line is read twice: first for what decides which plugins load (``--config`` and
``plugins``), then, once every plugin declared its settings, in full, with a flag per setting.

Exit status of the runtime: 0 when stopped by a signal, 2 when it cannot boot (one line says
why), 1 when a role stopped it after boot (``RoleContext.fail``: the engine after a failed write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from trine_core.errors import ConfigError, RoleFailed, TrineError
from trine_core.heap import settle_after_boot
from trine_core.logging import configure_logging
from trine_core.loops import event_loop_factory
from trine_core.plugins import PluginSet, command_names, load_command
from trine_core.runtime import Runtime
from trine_core.settings import (
    CONNECT,
    LOG_FORMAT,
    LOG_LEVEL,
    PLUGINS,
    Settings,
    SettingsRegistry,
    config_path,
    read_settings,
)

DESCRIPTION = (
    "trine, a durable execution runtime. Settings come from flags, then TRINE_* environment "
    "variables, then the config file, then defaults."
)


class _Parser(argparse.ArgumentParser):
    """Errors are one line, like every boot error, and name the plugins that failed to import
    (their flags are then unknown, which would otherwise be all the operator sees)."""

    failures: tuple[str, ...] = ()

    def error(self, message: str) -> NoReturn:
        raise ConfigError(_with_failures(message, self.failures))


def parser(registry: SettingsRegistry, failures: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The full command line: core's flags, then one per setting, grouped by plugin."""
    p = _Parser(prog="trine", description=DESCRIPTION, epilog=_commands_epilog())
    p.failures = failures
    p.add_argument("--config", type=Path, help="a TOML config file (env: TRINE_CONFIG)")
    p.add_argument(
        "--connect",
        action="append",
        metavar="CONTRACT=ADDRESS",
        help="dial a contract at an address, e.g. backend=grpc://10.0.0.5:7482 (repeatable; "
        "env: TRINE_CONNECT_<CONTRACT>; file: [connect])",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in registry:
        owner = registry.owner(setting)
        group = groups.get(owner) or groups.setdefault(owner, p.add_argument_group(owner))
        default = (
            ",".join(setting.default) if isinstance(setting.default, tuple) else setting.default
        )
        # A boolean flag alone means true (``--insecure``); ``--gateway-ui false`` still works.
        bare = {"nargs": "?", "const": "true"} if isinstance(setting.default, bool) else {}
        group.add_argument(
            setting.flag,
            dest=setting.key,
            metavar=setting.name.upper(),
            help=f"{setting.help} (default: {default}; env: {setting.env})",
            **bare,  # type: ignore[arg-type]
        )
    return p


def load(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_plugins: Iterable[object] = (),
) -> tuple[Settings, PluginSet]:
    """The settings and plugins the command line, the environment and the file describe
    (``extra_plugins``: inline plugins, as :class:`~trine_core.runtime.Runtime` takes them)."""
    env = os.environ if env is None else env
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", type=Path)
    early.add_argument(PLUGINS.flag, dest=PLUGINS.key)
    known, _ = early.parse_known_args(argv)
    config = config_path(known.config, env)
    core = SettingsRegistry()
    core.add(PLUGINS)
    observers = read_settings(
        core, {PLUGINS.key: getattr(known, PLUGINS.key)}, env, config, strict=False
    )
    plugins = PluginSet.load(extra_plugins, observers[PLUGINS])
    failures = tuple(plugins.failures.values())
    args = parser(plugins.settings, failures).parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key not in ("config", CONNECT)}
    flags[CONNECT] = dict(_pair(item) for item in args.connect or [])
    try:
        return read_settings(plugins.settings, flags, env, config), plugins
    except ConfigError as exc:
        raise ConfigError(_with_failures(exc.message, failures)) from None


def _with_failures(message: str, failures: tuple[str, ...]) -> str:
    return "; ".join((message, *failures))


def _commands_epilog() -> str | None:
    names = command_names()
    if not names:
        return None
    return f"commands: {', '.join(names)} (trine COMMAND --help; the command comes first)"


def main(argv: Sequence[str] | None = None, extra_plugins: Iterable[object] = ()) -> int:
    """The ``trine`` program; ``extra_plugins``: inline plugins, for commands (and tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        return _command(argv[0], argv[1:], extra_plugins)
    try:
        settings, plugins = load(argv, extra_plugins=extra_plugins)
        configure_logging(settings[LOG_LEVEL], settings[LOG_FORMAT])
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(_serve(Runtime(settings, plugins=plugins)))
    except RoleFailed as exc:  # it ran, then a role could not go on: a supervisor restarts it
        print(f"trine: error: {exc.message}", file=sys.stderr)
        return 1
    except TrineError as exc:
        print(f"trine: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _command(name: str, argv: list[str], extra_plugins: Iterable[object]) -> int:
    """``trine <name> ...``: the registered command's exit code; 2 when there is none."""
    try:
        command = load_command(name, extra_plugins)
        if command is None:
            known = ", ".join(command_names()) or "none installed"
            raise ConfigError(f"unknown command {name!r} (commands: {known}; roles: --target)")
    except TrineError as exc:
        print(f"trine: error: {exc.message}", file=sys.stderr)
        return 2
    try:
        return command(f"trine {name}", argv)
    except KeyboardInterrupt:
        return 130


def _pair(item: str) -> tuple[str, str]:
    name, sep, address = item.partition("=")
    if not sep:
        raise TrineError(f"--connect {item!r}: expected CONTRACT=ADDRESS")
    return name.strip(), address.strip()


async def _serve(runtime: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.run_until(stop, started=settle_after_boot)


if __name__ == "__main__":
    sys.exit(main())
