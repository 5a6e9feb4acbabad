"""Guard rails on what a workflow hands the engine: a value that is not JSON is refused with an
error naming what it is, where it is, and the likely fix.

``json`` alone says ``Object of type coroutine is not JSON serializable``: true, but the cause
(a forgotten ``await``) and the place (``result["id"]``) are left to guess, and the coroutine is
then garbage-collected with a ``RuntimeWarning`` far from the mistake. So when encoding fails,
the value is walked to find the first offender, and every coroutine in it is closed (it can never
be awaited now, and closing it keeps the warning from burying the real error). The walk happens
only after a failure: a value that encodes costs nothing more.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from . import _codec

__all__ = ["encode", "not_json"]

FORGOT_AWAIT = (
    "did you forget `await`? A coroutine is what an async function or a ctx call returns until "
    "it is awaited: write `await ...` (in an async step, `return await ...`)"
)
GENERATOR = (
    "a generator produces its items lazily and cannot be journaled: return a list of them "
    "(list(...), or [x async for x in ...] for an async generator)"
)
CONVERT = (
    "return JSON values only (dict with str keys, list, str, int, float, bool, None): convert it "
    "first (dataclasses.asdict(obj), model.model_dump(), list(a_set), a_datetime.isoformat())"
)


def encode(value: Any, what: str) -> bytes:
    """``value`` as JSON bytes; else ``TypeError`` from ``not_json`` (``what``: "the output of
    step 'x'", "the result of workflow 'f'", ...)."""
    try:
        return _codec.encode(value)
    except (TypeError, ValueError) as exc:
        raise not_json(value, what, exc) from exc


def not_json(value: Any, what: str, cause: BaseException) -> TypeError:
    """The error for a ``value`` that failed to encode (``cause``): what and where the first
    offender is, and the fix. Closes every coroutine in ``value``."""
    found: list[tuple[str, str, str]] = []  # (where, what it is, the fix)
    _walk(value, "", found, set())
    if not found:  # an encoder failure the walk does not recognise: say what json said
        return TypeError(f"{what} is not JSON-serializable: {cause}")
    where, kind, fix = found[0]
    place = f"its item {where}" if where else "it"
    more = f" ({len(found) - 1} more such values in it)" if len(found) > 1 else ""
    return TypeError(f"{what} is not JSON-serializable: {place} is {kind}{more}; {fix}")


def _walk(value: Any, where: str, found: list[tuple[str, str, str]], path: set[int]) -> None:
    """Append every value json cannot encode under ``value``; close the coroutines."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            found.append((where, f"{value!r}, which JSON cannot represent", CONVERT))
        return
    if isinstance(value, (dict, list, tuple)):
        if id(value) in path:
            found.append((where, "the container it is in (a circular reference)", CONVERT))
            return
        path.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not (key is None or isinstance(key, (str, int, float, bool))):
                    found.append((where, f"a dict with a {_name(key)} key {key!r}", CONVERT))
                _walk(item, f"{where}[{key!r}]", found, path)
        else:
            for position, item in enumerate(value):
                _walk(item, f"{where}[{position}]", found, path)
        path.discard(id(value))
        return
    if inspect.iscoroutine(value):
        value.close()
        found.append((where, f"a coroutine ({value.__qualname__})", FORGOT_AWAIT))
    elif inspect.isgenerator(value) or inspect.isasyncgen(value):
        if inspect.isgenerator(value):
            value.close()
        found.append((where, f"{_article(_name(value))} ({value.__name__})", GENERATOR))
    elif inspect.isawaitable(value):
        found.append((where, f"an awaitable {_name(value)}", FORGOT_AWAIT))
    else:
        found.append((where, f"{_article(_name(value))} ({_short(value)})", CONVERT))


def _name(value: Any) -> str:
    return type(value).__name__


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
