"""Inline roles around a contract of the tests' own, shared by core's tests."""

from __future__ import annotations

from typing import ClassVar, Protocol

from trine_core import RoleContext, RoleRegistry, Settings, hookimpl


class Greeter(Protocol):
    """A contract of the tests' own: core carries any Protocol, not only trine's two."""

    async def greet(self, name: str) -> str: ...


class Hello:
    async def greet(self, name: str) -> str:
        return f"hello {name}"


events: list[str] = []


class Provider:
    name: ClassVar[str] = "provider"
    serves: ClassVar[frozenset[type]] = frozenset({Greeter})
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.greeter = Hello()

    async def start(self, context: RoleContext) -> None:
        events.append("start provider")
        context.provide(Greeter, self.greeter)

    async def stop(self) -> None:
        events.append("stop provider")

    def ready(self) -> bool:
        return True


class Consumer:
    name: ClassVar[str] = "consumer"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset({Greeter})
    got: ClassVar[list[Greeter]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        events.append("start consumer")
        Consumer.got.append(context.need(Greeter))

    async def stop(self) -> None:
        events.append("stop consumer")

    def ready(self) -> bool:
        return True


class InlineRoles:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role("consumer", Consumer)  # registered first, started second
        registry.add_role("provider", Provider)
