"""Reading a request's JSON body: bounded nesting, valid UTF-8, and strict types (issue 14).

litestar decodes a body with msgspec and then converts it to the handler's type with
``strict=False``, which is right for query strings but let ``"timeout_s": "5"`` pass as 5.0.
And msgspec recurses once per nesting level: ~1,000 levels raised ``RecursionError`` (a 500),
as did invalid UTF-8 (``UnicodeDecodeError``). :class:`JsonRequest` replaces the decoding step:

- a body nested deeper than :data:`MAX_JSON_DEPTH` arrays and objects, or not valid UTF-8, or
  not JSON is 400 ``malformed_json`` (raised as ``SerializationException``, which litestar wraps
  in the 400 that :mod:`trine_gateway.errors` recognises);
- a body whose route declares a struct (``JSONBody[StartRunBody]``) is decoded straight into it
  with msgspec's strict rules, so a string where a number is declared is 400
  ``invalid_request`` naming the field. The struct is what the handler receives: litestar's own
  conversion passes an instance of the declared type through unchanged.

The depth check costs two ``bytes.count`` calls on an ordinary body: only a body holding more
brackets than the limit is measured, by deleting innermost empty pairs level by level (C-speed
passes, at most :data:`MAX_JSON_DEPTH` of them) once strings are cut out.
"""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException
from litestar.types import Empty

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects a request body may have. JSON documents this deep
are rare in practice; the cap keeps every reader (the gateway, the engine, a worker's ``json``)
far from Python's recursion limit."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit``. Brackets
    inside strings do not count; a body that is not JSON may answer either way (the decoder
    refuses it next)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not brackets or not removed:
            return False
    return bool(brackets)


def decode(body: bytes, target: Any = Any) -> Any:
    """``body`` decoded as ``target`` (any JSON value by default), strictly.

    Raises ``SerializationException`` (400 ``malformed_json``) for text that is not JSON, not
    UTF-8 or nested too deep, and ``ValidationException`` (400 ``invalid_request``, the field
    named) for JSON of the wrong shape."""
    if too_deep(body):
        raise SerializationException(f"nested deeper than {MAX_JSON_DEPTH} arrays and objects")
    try:
        return msgspec.json.decode(body, type=target)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        key = path.rstrip("`").lstrip(".").split("[", 1)[0].split(".", 1)[0] or "data"
        raise ValidationException(
            f"invalid request body: {exc}",
            extra=[{"message": message, "key": key, "source": "body"}],
        ) from None
    except msgspec.DecodeError as exc:
        raise SerializationException(str(exc)) from None
    except UnicodeDecodeError:
        raise SerializationException("the body is not valid UTF-8") from None
    except RecursionError:  # pragma: no cover - too_deep refuses such a body first
        raise SerializationException("nested too deep") from None


def _declared_struct(annotation: Any) -> Any:
    """The type to decode a body into when it is a struct or an optional struct; ``Any``
    otherwise (the body is then any JSON value, checked only for syntax and depth)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and _declared_struct(members[0]) is not Any:
            return annotation
    return Any


class JsonRequest(Request[Any, Any, Any]):
    """A litestar request whose ``json()`` decodes with :func:`decode`."""

    async def json(self) -> Any:
        if self._json is Empty:
            cached = self._connection_state.json
            if cached is not Empty:
                self._json = cached
            else:
                field = self.route_handler.parsed_data_field
                target = _declared_struct(field.annotation) if field is not None else Any
                body = await self.body()
                self._json = self._connection_state.json = decode(body or b"null", target)
        return self._json


__all__ = ["MAX_JSON_DEPTH", "JsonRequest", "decode", "too_deep"]
