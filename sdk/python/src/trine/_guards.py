"""Guard rails on what a workflow hands the engine: a value that is not JSON is refused with an
error naming what it is, where it is, and the likely fix.

``json`` alone says ``Object of type coroutine is not JSON serializable``: true, but the cause
(a forgotten ``await``) and the place (``result["id"]``) are left to guess, and the coroutine is
then garbage-collected with a ``RuntimeWarning`` far from the mistake. So when encoding fails,
the value is walked to find the first offender, and every coroutine in it is closed (it can never
be awaited now, and closing it keeps the warning from burying the real error). The walk happens
only after plain ``json`` failed: a plain value costs nothing more. It also tells a structured
value the converter encodes (a model, a dataclass, a datetime) from a mistake it must not paper
over (pydantic would turn a generator or a set into a list, a tuple key into a string).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import math
import uuid
from typing import Any

__all__ = ["CONVERT", "check_convertible", "is_model"]

FORGOT_AWAIT = (
    "did you forget `await`? A coroutine is what an async function or a ctx call returns until "
    "it is awaited: write `await ...` (in an async step, `return await ...`)"
)
GENERATOR = (
    "a generator produces its items lazily and cannot be journaled: return a list of them "
    "(list(...), or [x async for x in ...] for an async generator)"
)
CONVERTIBLE = ""  # not JSON itself, but a converter of structured types takes it
CONVERT = (
    "use JSON values (dict with str keys, list, str, int, float, bool, None), pydantic models, "
    "dataclasses, TypedDicts, datetimes, UUIDs, Decimals or Enums, or convert it first "
    "(list(a_set), str(a_path), ...)"
)


def check_convertible(value: Any, what: str, cause: BaseException) -> None:
    """Raise the error for a ``value`` plain ``json`` refused (``cause``; ``what``: "the output
    of step 'x'", ...) unless every value in it that json refused is one a converter of
    structured types takes: a pydantic model, a dataclass, a date or time, a UUID, a Decimal,
    an Enum. The error names the first offender, where it is and the fix; every coroutine in
    ``value`` is closed."""
    found: list[tuple[str, str, str]] = []  # (where, what it is, the fix)
    _walk(value, "", found, set())
    problems = [item for item in found if item[2] is not CONVERTIBLE]
    if problems:
        raise _error(problems, what)
    if not found:  # an encoder failure the walk does not recognise: say what json said
        raise TypeError(f"{what} is not JSON-serializable: {cause}")


def _error(found: list[tuple[str, str, str]], what: str) -> TypeError:
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
    if _structured(value):
        found.append((where, _name(value), CONVERTIBLE))
    elif inspect.iscoroutine(value):
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


def is_model(value: Any) -> bool:
    """A pydantic model or a dataclass instance: a value whose type defines its JSON form."""
    if isinstance(value, type):
        return False
    return hasattr(value, "__pydantic_serializer__") or dataclasses.is_dataclass(value)


def _structured(value: Any) -> bool:
    """A value whose JSON form its type defines (what ``PydanticConverter`` encodes)."""
    return is_model(value) or isinstance(value, _STRUCTURED_SCALARS)


_STRUCTURED_SCALARS = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
)


def _name(value: Any) -> str:
    return type(value).__name__


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
