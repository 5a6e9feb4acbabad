"""The runtime with inline plugins standing in for installed ones."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import Install
from roles import Consumer, Greeter, Hello, InlineRoles, Provider, events

from trine_core import (
    TARGET,
    ConfigError,
    RoleContext,
    RoleFailed,
    RoleRegistry,
    Runtime,
    Settings,
    hookimpl,
)
from trine_core.runtime import role_names, runs_all, start_order


def target(value: str, **connect: str) -> Settings:
    return Settings({TARGET: value}, connect)


def test_role_names_expand_all_in_registration_order() -> None:
    assert role_names("all", ["a", "b"]) == ["a", "b"]
    assert role_names("b,all", ["a", "b"]) == ["b", "a"]
    with pytest.raises(ConfigError, match="names no role"):
        role_names(" , ", ["a"])


def test_start_order_puts_providers_first() -> None:
    roles: dict[str, Any] = {"consumer": Consumer(Settings()), "provider": Provider(Settings())}
    assert start_order(roles) == ["provider", "consumer"]


def test_a_cycle_of_needs_is_an_error_naming_the_roles() -> None:
    class Echo(Greeter):
        pass

    class Loop(Provider):
        needs: ClassVar[frozenset[type]] = frozenset({Echo})

    class Other(Consumer):
        serves: ClassVar[frozenset[type]] = frozenset({Echo})

    roles: dict[str, Any] = {"a": Loop(Settings()), "b": Other(Settings())}
    with pytest.raises(ConfigError, match="cycle: a, b"):
        start_order(roles)


async def test_a_local_need_gets_the_providers_object_and_stops_in_reverse() -> None:
    runtime = Runtime(target("consumer,provider"), extra_plugins=(InlineRoles(),))
    await runtime.start()
    assert list(runtime.roles) == ["provider", "consumer"]
    [greeter] = Consumer.got
    assert isinstance(greeter, Hello)  # the very object: nothing serialized
    assert await greeter.greet("ada") == "hello ada"
    assert runtime.ready()
    await runtime.stop()
    assert events == ["start provider", "start consumer", "stop consumer", "stop provider"]


async def test_unknown_role_lists_known_ones() -> None:
    runtime = Runtime(target("provider,bogus"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match=r"unknown role 'bogus' \(known: consumer, provider"):
        await runtime.start()


async def test_unknown_transport_scheme() -> None:
    runtime = Runtime(target("consumer", greeter="nats://x"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match="unknown transport 'nats'"):
        await runtime.start()


async def test_a_need_nobody_serves_or_places_names_the_contract() -> None:
    runtime = Runtime(target("consumer"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match=r"no role of this process serves greeter.*\[connect\]"):
        await runtime.start()


async def test_a_plugin_says_where_its_contract_is_served() -> None:
    class Placing:
        @hookimpl
        def trine_contract_address(self, contract: type, settings: Settings) -> str | None:
            return "nats://greeters" if contract is Greeter else None

    runtime = Runtime(target("consumer"), extra_plugins=(InlineRoles(), Placing()))
    with pytest.raises(ConfigError, match="unknown transport 'nats'"):  # it dialled there
        await runtime.start()


async def test_a_role_that_does_not_provide_what_it_serves() -> None:
    class Lazy(Provider):
        async def start(self, context: RoleContext) -> None:
            pass

    class Plugin:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("provider", Lazy)

    runtime = Runtime(target("provider"), extra_plugins=(Plugin(),))
    with pytest.raises(ConfigError, match="serves greeter but did not provide it"):
        await runtime.start()


async def test_two_plugins_claiming_a_name_is_an_error_naming_both() -> None:
    class Other:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("provider", Provider)

    runtime = Runtime(target("provider"), extra_plugins=(InlineRoles(), Other()))
    with pytest.raises(ConfigError, match="provided by two plugins: InlineRoles and Other"):
        await runtime.start()


async def test_each_plugins_registration_hooks_are_called_once() -> None:
    calls: list[str] = []

    class Counting:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            calls.append("roles")

    runtime = Runtime(target("provider"), extra_plugins=(InlineRoles(), Counting()))
    await runtime.start()
    await runtime.stop()
    assert calls == ["roles"]


async def test_a_failing_start_stops_what_started() -> None:
    class Broken(Consumer):
        async def start(self, context: RoleContext) -> None:
            raise ConfigError("consumer: cannot listen")

    class Plugin:
        @hookimpl
        def trine_register_roles(self, registry: RoleRegistry) -> None:
            registry.add_role("provider", Provider)
            registry.add_role("consumer", Broken)

    runtime = Runtime(target("consumer,provider"), extra_plugins=(Plugin(),))
    with pytest.raises(ConfigError, match="cannot listen"):
        await runtime.start()
    assert events == ["start provider", "stop provider"]


async def test_misspelled_hook_fails_at_boot() -> None:
    class Typo:
        @hookimpl
        def trine_register_role(self, registry: Any) -> None:
            pass

    runtime = Runtime(target("provider"), extra_plugins=(InlineRoles(), Typo()))
    with pytest.raises(ConfigError, match="trine_register_role"):
        await runtime.start()


async def test_an_installed_role_that_fails_to_import_matters_only_when_selected(
    install: Install,
) -> None:
    install("broken_role", "trine.roles", "broken", "raise ImportError('no rocks here')\n")
    runtime = Runtime(target("provider"), extra_plugins=(InlineRoles(),))
    await runtime.start()  # not selected: boot goes on
    await runtime.stop()
    runtime = Runtime(target("broken"), extra_plugins=(InlineRoles(),))
    with pytest.raises(
        ConfigError,
        match=r"role plugin 'broken' from broken_role 1.0 failed to import: ImportError: no rocks",
    ):
        await runtime.start()


async def test_all_names_an_installed_role_that_failed_to_import(install: Install) -> None:
    install("broken_role", "trine.roles", "broken", "raise ImportError('no rocks here')\n")
    runtime = Runtime(target("all"), extra_plugins=(InlineRoles(),))
    with pytest.raises(ConfigError, match=r"role plugin 'broken' from broken_role 1\.0"):
        await runtime.start()


async def test_an_observer_failing_at_stop_does_not_stop_the_shutdown() -> None:
    class Failing:
        @hookimpl
        def trine_role_stopped(self, name: str, role: Any) -> None:
            raise RuntimeError("observer broke")

    runtime = Runtime(target("consumer,provider"), extra_plugins=(InlineRoles(), Failing()))
    await runtime.start()
    await runtime.stop()
    assert events[-2:] == ["stop consumer", "stop provider"]


def test_runs_all() -> None:
    assert runs_all("all")
    assert runs_all("all, myrole")
    assert not runs_all("engine,coordinator,gateway")


class Fragile:
    """A role that finds, once started, that it cannot go on (as the engine after a failed
    write): it asks the runtime to stop the process."""

    name: ClassVar[str] = "fragile"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        events.append("start fragile")
        asyncio.get_running_loop().call_soon(context.fail, "the disk is gone")

    async def stop(self) -> None:
        events.append("stop fragile")

    def ready(self) -> bool:
        return True


class FragileRoles(InlineRoles):
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        super().trine_register_roles(registry)
        registry.add_role(Fragile.name, Fragile)


async def test_a_role_that_fails_stops_every_role_and_run_until_raises_its_reason() -> None:
    events.clear()
    runtime = Runtime(target("provider,fragile"), extra_plugins=(FragileRoles(),))
    with pytest.raises(RoleFailed, match=r"^the disk is gone$") as caught:
        await asyncio.wait_for(runtime.run_until(asyncio.Event()), timeout=10)
    assert caught.value.details == {"role": "fragile"}
    assert events == ["start provider", "start fragile", "stop fragile", "stop provider"]


def test_trine_exits_with_1_and_one_line_when_a_role_fails() -> None:
    program = (
        "import sys; from test_runtime import FragileRoles; from trine_core.cli import main; "
        "sys.exit(main(['--target', 'fragile', '--log-level', 'error'], (FragileRoles(),)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == "trine: error: the disk is gone"
    assert "Traceback" not in out.stderr


class SlowToFail(Fragile):
    """Fails as it starts, with a long grace period (the engine serving reads before it exits)."""

    name: ClassVar[str] = "slow"

    async def start(self, context: RoleContext) -> None:
        context.fail("it broke", after_s=3600)


class SlowRoles(InlineRoles):
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        super().trine_register_roles(registry)
        registry.add_role(SlowToFail.name, SlowToFail)


async def test_a_failure_counts_at_once_even_when_a_signal_stops_the_process_first() -> None:
    """A SIGTERM during the grace period: the process still ends as failed, for systemd's
    ``Restart=on-failure``."""
    runtime = Runtime(target("provider,slow"), extra_plugins=(SlowRoles(),))
    stop = asyncio.Event()
    stop.set()  # the signal came in before the grace period ran out
    with pytest.raises(RoleFailed, match="it broke"):
        await asyncio.wait_for(runtime.run_until(stop), timeout=10)


async def test_run_until_calls_started_once_every_role_runs() -> None:
    """The ``trine`` program settles its heap there (trine_core.heap): after the boot, before
    the wait for a stop."""
    events.clear()
    runtime = Runtime(target("provider"), extra_plugins=(InlineRoles(),))
    stop = asyncio.Event()
    seen: list[list[str]] = []

    def started() -> None:
        seen.append(list(events))
        stop.set()

    await asyncio.wait_for(runtime.run_until(stop, started=started), timeout=10)
    assert seen == [["start provider"]]
    assert events == ["start provider", "stop provider"]
