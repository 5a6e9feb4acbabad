"""Commands of the ``trine`` program (``trine <word> ...``): registered by plugins through
``trine_register_commands``, found by their ``trine.commands`` entry point; everything else is
the role-starting command line, unchanged (tests/test_cli.py runs it as a process: a boot
configures logging to the process's stderr)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import Install

from trine_core import CommandRegistry, hookimpl
from trine_core.cli import load, main, parser
from trine_core.plugins import load_command

HELLO = """
from trine_core import hookimpl

seen = []


def hello(prog, argv):
    seen.append((prog, list(argv)))
    return 7


@hookimpl
def trine_register_commands(registry):
    registry.add_command("hello", hello)
    registry.add_command("hi", hello)
"""


class Greeter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    @hookimpl
    def trine_register_commands(self, registry: CommandRegistry) -> None:
        registry.add_command("hello", self.hello)

    def hello(self, prog: str, argv: Sequence[str]) -> int:
        self.calls.append((prog, list(argv)))
        return 3


def test_an_inline_command_gets_its_arguments_and_gives_the_exit_code() -> None:
    greeter = Greeter()
    assert main(["hello", "--loud", "world"], extra_plugins=(greeter,)) == 3
    assert greeter.calls == [("trine hello", ["--loud", "world"])]


def test_an_installed_command_is_loaded_by_its_entry_point_name(install: Install) -> None:
    install("trine_hello", "trine.commands", "hello", HELLO)
    assert main(["hello", "x"]) == 7
    import trine_hello  # type: ignore[import-not-found]

    assert trine_hello.seen == [("trine hello", ["x"])]


def test_an_inline_command_wins_over_an_installed_one_which_is_not_imported(
    install: Install,
) -> None:
    install("trine_hello", "trine.commands", "hello", "raise RuntimeError('must not import')\n")
    greeter = Greeter()
    assert main(["hello"], extra_plugins=(greeter,)) == 3


def test_an_unknown_command_is_one_line_naming_the_known_ones(
    install: Install, capsys: pytest.CaptureFixture[str]
) -> None:
    install("trine_hello", "trine.commands", "hello", HELLO)
    assert main(["nosuch", "list"]) == 2
    err = capsys.readouterr().err
    assert err == "trine: error: unknown command 'nosuch' (commands: hello; roles: --target)\n"


def test_a_command_plugin_that_fails_to_import_is_one_line_naming_it(
    install: Install, capsys: pytest.CaptureFixture[str]
) -> None:
    install("trine_hello", "trine.commands", "hello", "raise RuntimeError('broken')\n")
    assert main(["hello"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "trine: error: command plugin 'hello' from trine_hello 1.0 failed to import: "
        "RuntimeError: broken\n"
    )


def test_a_command_plugin_must_register_the_command_it_is_named_for(install: Install) -> None:
    install("trine_hello", "trine.commands", "howdy", HELLO)
    with pytest.raises(Exception, match="did not register the command 'howdy'"):
        load_command("howdy")


def test_two_plugins_registering_one_command_is_an_error_naming_both(install: Install) -> None:
    install("trine_hello", "trine.commands", "hi", HELLO)
    with pytest.raises(Exception, match="command 'hello' is provided by two plugins"):
        load_command("hi", extra=(Greeter(),))


def test_roles_never_load_command_plugins_and_help_lists_commands(install: Install) -> None:
    install("trine_hello", "trine.commands", "hello", "raise RuntimeError('must not import')\n")
    _, plugins = load([], env={})  # a boot's plugins: no command plugin imported
    help_text = parser(plugins.settings).format_help()
    assert "commands: hello (trine COMMAND --help" in help_text
