"""``trine_http_apps``: observers hand ASGI apps, by path, to a role that serves HTTP, which
reads them with ``RoleContext.http_apps()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from trine_core import (
    PLUGINS,
    TARGET,
    ConfigError,
    RoleContext,
    RoleRegistry,
    Runtime,
    Settings,
    hookimpl,
)
from trine_core.hookspecs import ASGIApp


async def app(scope: Any, receive: Any, send: Any) -> None:
    pass


async def other(scope: Any, receive: Any, send: Any) -> None:
    pass


class Web:
    """A role standing for the gateway: it takes what the observers mount."""

    name: ClassVar[str] = "web"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()
    mounted: ClassVar[list[dict[str, ASGIApp]]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        Web.mounted.append(context.http_apps())

    async def stop(self) -> None:
        pass

    def ready(self) -> bool:
        return True


class Roles:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role(Web.name, Web)


class Mounts:
    def __init__(self, apps: Mapping[str, ASGIApp] | None) -> None:
        self.apps = apps

    @hookimpl
    def trine_http_apps(self, settings: Settings) -> Mapping[str, ASGIApp] | None:
        return self.apps


def runtime(*observers: object) -> Runtime:
    settings = Settings({TARGET: "web", PLUGINS: ("none",)})
    return Runtime(settings, extra_plugins=(Roles(), *observers))


async def test_a_role_gets_every_observers_apps() -> None:
    Web.mounted.clear()
    r = runtime(Mounts({"/metrics": app}), Mounts(None), Mounts({"/audit": other}))
    await r.start()
    await r.stop()
    assert Web.mounted == [{"/metrics": app, "/audit": other}]


async def test_none_without_observers() -> None:
    Web.mounted.clear()
    r = runtime()
    await r.start()
    await r.stop()
    assert Web.mounted == [{}]


@pytest.mark.parametrize(
    ("second", "problem"),
    [({"/metrics": other}, "is mounted twice"), ({"metrics": other}, "does not start with /")],
)
async def test_a_clash_is_a_boot_error(second: dict[str, ASGIApp], problem: str) -> None:
    r = runtime(Mounts({"/metrics": app}), Mounts(second))
    with pytest.raises(ConfigError, match=problem):
        await r.start()


def test_a_context_built_without_the_runtime_has_none() -> None:
    context = RoleContext(Settings({}), log=None)  # type: ignore[arg-type]
    assert context.http_apps() == {}
