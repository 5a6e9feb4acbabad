"""Converters: how values cross the wire as JSON, and come back as the types the code annotates.

Every payload trine stores (a run's input and result, a step's output, a child's input and
result, a signal's payload, an event's data) is a JSON document. A converter turns what the code
hands trine into those bytes, and those bytes back into the type the code declared: a workflow's
input parameter, a step function's return annotation, a child workflow's return annotation, the
type a signal wait names. Values without a declared type come back as plain JSON values.

The default, :class:`PydanticConverter`, takes pydantic models, dataclasses, TypedDicts, enums,
datetimes, UUIDs and the rest of what pydantic knows, besides plain JSON values. A converter of
your own (``Worker(converter=...)``, ``Client(converter=...)``) implements :class:`Converter`.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Protocol, runtime_checkable

import pydantic

from . import _codec, _guards
from .errors import ConversionError

__all__ = ["Converter", "PydanticConverter"]


@runtime_checkable
class Converter(Protocol):
    """Turns values into JSON bytes and JSON bytes into values of a requested type.

    ``what`` names the value for errors ("the output of step 'charge'"); an error must name it
    and the type, and be a :class:`~trine.ConversionError`.
    """

    def to_json(self, value: Any, what: str) -> bytes:
        """``value`` as a JSON document in UTF-8 bytes."""
        ...

    def from_json(self, data: bytes, type_: Any, what: str) -> Any:
        """The JSON document ``data`` (empty bytes: ``null``) as a ``type_``; ``Any`` (or
        ``None`` meaning "no declared type") returns the plain JSON value."""
        ...


# Plain JSON needs no validation beyond json.loads and a type check: the fast path that keeps
# untyped dicts as cheap as they were before converters.
_PLAIN: dict[Any, tuple[type, ...]] = {
    dict: (dict,),
    list: (list,),
    str: (str,),
    int: (int,),
    float: (float, int),
    bool: (bool,),
    dict[str, Any]: (dict,),  # JSON object keys are always strings
    list[Any]: (list,),
}
_UNTYPED = (None, Any, object, inspect.Parameter.empty)
_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)  # encodes a value by its own type


class PydanticConverter:
    """The default converter: stdlib ``json`` encodes plain values, pydantic the rest and decodes.

    Plain values (dicts, lists, strings, numbers, booleans, None) encode with ``json`` exactly
    as before typed conversion, so journals stay byte-identical. A model or a dataclass goes
    straight to pydantic; anything else json refuses is checked by the guard rails first.
    Decoding is pydantic's (its JSON parser is faster than ``json.loads``): into a declared type
    with a cached ``pydantic.TypeAdapter`` (lax mode, as FastAPI does: ``"3"`` is a valid
    ``int``), else into plain JSON values.
    """

    def __init__(self) -> None:
        self._adapters: dict[Any, pydantic.TypeAdapter[Any]] = {}

    def to_json(self, value: Any, what: str) -> bytes:
        if _guards.is_model(value):  # json would only fail on it first
            return self._dump(value, what)
        try:
            return _codec.encode(value)
        except (TypeError, ValueError) as plain_error:
            # Only structured values go on to pydantic: it would also turn a generator or a
            # set into a list and a tuple key into a string, hiding a mistake or losing data.
            _guards.check_convertible(value, what, plain_error)
        return self._dump(value, what)

    def _dump(self, value: Any, what: str) -> bytes:
        try:
            return _ANY.dump_json(value)
        except (TypeError, ValueError) as error:  # PydanticSerializationError is a ValueError
            raise TypeError(
                f"{what} is not JSON-serializable: {error}; {_guards.CONVERT}"
            ) from None

    def from_json(self, data: bytes, type_: Any, what: str) -> Any:
        if type_ in _UNTYPED:
            return _plain_decode(data)
        try:
            plain = _PLAIN.get(type_)
        except TypeError:  # an unhashable annotation
            plain = None
        if plain is not None:
            value = _plain_decode(data)
            if isinstance(value, plain) and not (type_ is not bool and isinstance(value, bool)):
                return value
        try:
            return self._adapter(type_).validate_json(data or b"null")
        except pydantic.ValidationError as error:
            raise ConversionError(what, _type_name(type_), _summary(error)) from None

    def _adapter(self, type_: Any) -> pydantic.TypeAdapter[Any]:
        try:
            adapter = self._adapters.get(type_)
        except TypeError:  # an unhashable annotation: build one each time
            return _new_adapter(type_)
        if adapter is None:
            adapter = self._adapters[type_] = _new_adapter(type_)
        return adapter


def _plain_decode(data: bytes) -> Any:
    """The plain JSON value in ``data`` (empty: None), by pydantic's parser; what it refuses
    and ``json`` takes (a lone surrogate, ``NaN``) by ``json``, as before converters."""
    if not data:
        return None
    try:
        return _ANY.validate_json(data)
    except pydantic.ValidationError:
        return _codec.decode(data)


def _new_adapter(type_: Any) -> pydantic.TypeAdapter[Any]:
    """A validator of ``type_``; a type pydantic cannot validate is a ``TypeError`` naming it."""
    try:
        return pydantic.TypeAdapter(type_)
    except pydantic.PydanticUserError as error:
        first = str(error).split("\n", 1)[0]
        raise TypeError(f"trine cannot convert values to {_type_name(type_)}: {first}") from None


def _summary(error: pydantic.ValidationError) -> str:
    """pydantic's errors, one per line, without its documentation links."""
    lines = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "the value"
        lines.append(f"{where}: {item['msg']} (got {json.dumps(item.get('input'), default=repr)})")
    return "; ".join(lines)


def _type_name(type_: Any) -> str:
    if isinstance(type_, type):
        return type_.__qualname__
    return repr(type_).replace("typing.", "")
