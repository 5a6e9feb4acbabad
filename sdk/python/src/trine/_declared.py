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
    while isinstance(fn, functools.partial):
        fn = fn.func
    key = _cache_key(fn)
    if key is None:
        return _resolve_return(fn)
    found = _RETURN_TYPES.get(key, _MISSING)
    if found is _MISSING:
        if len(_RETURN_TYPES) >= _CACHE_SIZE:
            _RETURN_TYPES.clear()
        found = _RETURN_TYPES[key] = _resolve_return(fn)
    return found


# Resolving annotations takes tens of microseconds, and a step function is often a closure made
# anew on every call. So the cache is keyed by what decides the answer (the code, its globals,
# the annotations as written), not by the function object: every closure of one ``def`` shares
# an entry, and no entry keeps a closure (or what it captured) alive.
_RETURN_TYPES: dict[tuple[Any, ...], Any] = {}
_CACHE_SIZE = 4096
_MISSING = object()


def _cache_key(fn: Callable[..., Any]) -> tuple[Any, ...] | None:
    function = getattr(fn, "__func__", fn)  # a bound method's function
    code = getattr(function, "__code__", None)
    if code is None:  # a callable object or a builtin: by its type's __call__
        call = getattr(type(fn), "__call__", None)  # noqa: B004
        code = getattr(call, "__code__", None)
        if code is None:
            return None
        function = call
    try:
        annotations = tuple(getattr(function, "__annotations__", {}).items())
        key = (code, id(getattr(function, "__globals__", None)), annotations)
        hash(key)
    except TypeError:  # an unhashable annotation
        return None
    return key


def _resolve_return(fn: Callable[..., Any]) -> Any:
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
