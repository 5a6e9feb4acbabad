"""Observer plugins (``trine.plugins``): loaded when enabled, told of each lifecycle step."""

from __future__ import annotations

import pytest
from conftest import Install
from roles import InlineRoles

from trine_core import PLUGINS, TARGET, ConfigError, Runtime, Settings

OBSERVER = """
from trine_core import hookimpl

seen = []


@hookimpl
def trine_role_started(name, role, context):
    seen.append(("role_started", name, type(role).__name__, context.settings is not None))


@hookimpl
def trine_runtime_started(settings, roles):
    seen.append(("runtime_started", tuple(roles)))


@hookimpl
def trine_role_stopped(name, role):
    seen.append(("role_stopped", name))


@hookimpl
def trine_runtime_stopped(settings):
    seen.append(("runtime_stopped",))
"""


def settings(*plugins: str) -> Settings:
    return Settings({TARGET: "consumer,provider", PLUGINS: plugins})


async def test_an_enabled_observer_sees_every_lifecycle_step(install: Install) -> None:
    install("trine_audit", "trine.plugins", "audit", OBSERVER)
    runtime = Runtime(settings("audit"), extra_plugins=(InlineRoles(),))
    await runtime.start()
    await runtime.stop()
    import trine_audit  # type: ignore[import-not-found]

    assert trine_audit.seen == [
        ("role_started", "provider", "Provider", True),
        ("role_started", "consumer", "Consumer", True),
        ("runtime_started", ("provider", "consumer")),
        ("role_stopped", "consumer"),
        ("role_stopped", "provider"),
        ("runtime_stopped",),
    ]


async def test_all_installed_observers_are_enabled_by_default(install: Install) -> None:
    install("trine_audit", "trine.plugins", "audit", OBSERVER)
    runtime = Runtime(Settings({TARGET: "consumer,provider"}), extra_plugins=(InlineRoles(),))
    await runtime.start()
    await runtime.stop()
    import trine_audit  # type: ignore[import-not-found]

    assert ("runtime_stopped",) in trine_audit.seen


async def test_none_enables_no_observer(install: Install) -> None:
    install("trine_audit", "trine.plugins", "audit", "raise RuntimeError('must not import')\n")
    runtime = Runtime(settings("none"), extra_plugins=(InlineRoles(),))
    await runtime.start()
    await runtime.stop()


async def test_an_unknown_or_broken_observer_is_a_boot_error(install: Install) -> None:
    runtime = Runtime(settings("nosuch"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match="unknown plugin 'nosuch' in plugins"):
        await runtime.start()
    install("trine_bad", "trine.plugins", "bad", "raise RuntimeError('boom')\n")
    runtime = Runtime(settings("bad"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match=r"observer plugin 'bad' from trine_bad 1\.0 failed"):
        await runtime.start()


async def test_runtime_stopped_is_not_called_when_no_role_started(install: Install) -> None:
    install("trine_audit", "trine.plugins", "audit", OBSERVER)
    runtime = Runtime(Settings({TARGET: "nosuch", PLUGINS: ("audit",)}), (InlineRoles(),))
    with pytest.raises(ConfigError):
        await runtime.start()
    import trine_audit  # type: ignore[import-not-found]

    assert trine_audit.seen == []
