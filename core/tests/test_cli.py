"""The ``trine`` command line: core's flags, a plugin's own flags, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Install

from trine_core import INSECURE, LOG_LEVEL, ConfigError, Setting, SettingsRegistry, hookimpl
from trine_core.cli import load, parser

COLOUR = Setting("colour", "blue", "the colour of things", section="paint")
COATS = Setting("coats", 1, "how many coats", section="paint")


class PaintPlugin:
    @hookimpl
    def trine_add_settings(self, registry: SettingsRegistry) -> None:
        registry.add(COLOUR, COATS)


def test_help_lists_core_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for flag in ("--target", "--config", "--connect", "--max-payload-bytes", "--plugins"):
        assert flag in out.stdout


def test_a_plugins_setting_gets_a_flag_a_variable_and_a_file_key(tmp_path: Path) -> None:
    registry = load([], env={}, extra_plugins=(PaintPlugin(),))[1].settings
    help_text = parser(registry).format_help()
    assert "--paint-colour" in help_text
    assert "TRINE_PAINT_COLOUR" in help_text

    config = tmp_path / "trine.toml"
    config.write_text('[paint]\ncolour = "red"\ncoats = 2\n')
    env = {"TRINE_CONFIG": str(config), "TRINE_PAINT_COATS": "3"}
    settings, _ = load([], env=env, extra_plugins=(PaintPlugin(),))
    assert (settings[COLOUR], settings[COATS]) == ("red", 3)  # file, then env over file
    settings, _ = load(["--paint-coats", "4"], env=env, extra_plugins=(PaintPlugin(),))
    assert settings[COATS] == 4  # flag over env


def test_a_bad_value_of_a_plugin_setting_names_its_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TRINE_PAINT_COATS: expected int"):
        load([], env={"TRINE_PAINT_COATS": "many"}, extra_plugins=(PaintPlugin(),))
    config = tmp_path / "trine.toml"
    config.write_text("[nosuch]\nthing = 1\n")
    with pytest.raises(ConfigError, match=r"no installed plugin has a \[nosuch\] section"):
        load(["--config", str(config)], env={}, extra_plugins=(PaintPlugin(),))


def test_config_error_is_one_line_without_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--target", "nosuchrole"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("trine: error: unknown role 'nosuchrole'")
    assert "Traceback" not in out.stderr


def test_an_unknown_observer_plugin_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--plugins", "nosuchplugin"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "unknown plugin 'nosuchplugin'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_flag_of_a_plugin_that_failed_to_import_names_the_failure(install: Install) -> None:
    install("broken_paint", "trine.roles", "paint", "raise ImportError('no paint here')\n")
    with pytest.raises(ConfigError, match=r"unrecognized arguments: --paint-colour.*no paint"):
        load(["--paint-colour", "red"], env={})


def test_log_level_is_case_insensitive() -> None:
    settings, _ = load([], env={"TRINE_LOG_LEVEL": "WARNING"})
    assert settings[LOG_LEVEL] == "warning"


@pytest.mark.parametrize(
    ("argv", "expected"), [([], False), (["--insecure"], True), (["--insecure", "false"], False)]
)
def test_a_boolean_flag_alone_means_true(argv: list[str], expected: bool) -> None:
    settings, _ = load(argv, env={})
    assert settings[INSECURE] is expected
