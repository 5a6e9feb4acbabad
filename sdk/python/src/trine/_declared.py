"""What workflow code declares: the types its values convert to, and a workflow's name.

Read from annotations (``typing.get_type_hints``, so ``from __future__ import annotations`` and
forward references work), once per function: a step function is usually the same object on every
call.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["NAME_ATTRIBUTE", "input_type", "return_type", "workflow_name"]

# Set on a function by ``@worker.function``: the name it is registered under.
NAME_ATTRIBUTE = "__trine_function__"


def workflow_name(function: str | Callable[..., Any]) -> str:
    """The registered name of a workflow given by name or as its function: the name
    ``@worker.function`` gave it, else the function's ``__name__`` (the default name)."""
    name: Any = function
    if not isinstance(function, str):
        name = getattr(function, NAME_ATTRIBUTE, None) or getattr(function, "__name__", "")
    if not name:
        raise ValueError(f"a run needs a function name or a workflow function, not {function!r}")
    return str(name)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations; empty when there are none or they cannot be resolved (a
    lambda, a ``functools.partial``, a forward reference to a name that does not exist)."""
    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(fn, "__call__", fn)  # noqa: B004 - a callable object's own method
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation we cannot resolve is no annotation
        return {}


def return_type(fn: Callable[..., Any]) -> Any:
    """The type ``fn``'s result converts to: its return annotation (``T`` of an ``async def``
    or of an ``Awaitable[T]``), or None when it declares none."""
    try:
        return _return_type(fn)
    except TypeError:  # an unhashable callable object
        return _return_type.__wrapped__(fn)


# Resolving annotations takes tens of microseconds; a step function is usually the same object
# on every call. Bounded, because a lambda is a new object each time.
@functools.lru_cache(maxsize=4096)
def _return_type(fn: Callable[..., Any]) -> Any:
    annotation = _hints(fn).get("return")
    origin = typing.get_origin(annotation)
    if origin is not None and origin.__name__ in ("Awaitable", "Coroutine"):
        annotation = typing.get_args(annotation)[-1]
    return annotation


def input_type(fn: Callable[..., Any]) -> Any:
    """The type of a workflow's input: the annotation of its parameter after ``ctx``, or None."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(parameters) < 2:
        return None
    return _hints(fn).get(parameters[1].name)
