"""The state machine's tables: every command kind has a planner and every record kind an
applier, each typed with the message its oneof field carries (the tables hold them as
``Any``, so this is where a mismatch is caught)."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import betterproto2
import pytest

from trine_engine.machine import APPLIERS, PLANNERS
from trine_proto.trine.engine.v1 import LogRecord
from trine_proto.trine.v1 import Command


def _oneof_types(message: type[betterproto2.Message], group: str) -> dict[str, type]:
    hints = typing.get_type_hints(message)
    fields = message._betterproto.oneof_field_by_group[group]  # type: ignore[attr-defined]
    return {
        field.name: next(t for t in typing.get_args(hints[field.name]) if t is not types.NoneType)
        for field in fields
    }


@pytest.mark.parametrize(
    ("table", "message", "group"),
    [(PLANNERS, Command, "command"), (APPLIERS, LogRecord, "record")],
    ids=["planners", "appliers"],
)
def test_each_kind_has_a_handler_typed_with_its_message(
    table: Mapping[str, Callable[..., Any]], message: type[betterproto2.Message], group: str
) -> None:
    kinds = _oneof_types(message, group)
    assert set(table) == set(kinds)
    for kind, handler in table.items():
        # The message is the second parameter; its annotation is a name the handler's module
        # imports (the others may be imported for type checking only).
        annotation = list(inspect.signature(handler).parameters.values())[1].annotation
        assert eval(annotation, handler.__globals__) is kinds[kind], kind
