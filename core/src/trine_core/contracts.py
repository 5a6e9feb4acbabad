"""Contracts by class: the key a role asks for, a transport carries and a config file names.

A contract is a ``typing.Protocol`` (``Backend``, ``Dispatcher``, or a third party's). Roles and
transports pass the class itself around, so ``context.need(Backend)`` is typed ``Backend``. Where
text must name it (``[connect]`` in the config file, ``--connect``, logs), its name is the class
name in snake case: ``Backend`` → ``backend``, ``WorkerRegistry`` → ``worker_registry``.
"""

from __future__ import annotations

import re
from typing import TypeVar, cast

from trine_core.errors import ConfigError

T = TypeVar("T")
_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def contract_name(contract: type) -> str:
    return _WORD.sub("_", contract.__name__).lower()


class Contracts:
    """Implementations by contract: one each, found by the contract class."""

    def __init__(self) -> None:
        self._items: dict[type, object] = {}

    def add(self, contract: type[T], implementation: T) -> None:
        if contract in self._items:
            raise ConfigError(f"{contract_name(contract)} is provided twice")
        self._items[contract] = implementation

    def get(self, contract: type[T]) -> T:
        try:
            return cast(T, self._items[contract])
        except KeyError:
            raise KeyError(contract_name(contract)) from None

    def __contains__(self, contract: object) -> bool:
        return contract in self._items
