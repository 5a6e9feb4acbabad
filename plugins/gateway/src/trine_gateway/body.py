"""Reading a request's JSON body: bounded nesting, valid UTF-8, and strict types (issue 14).

litestar decodes a body with msgspec and then converts it to the handler's type with
``strict=False``, which is right for query strings but let ``"timeout_s": "5"`` pass as 5.0.
And msgspec recurses once per nesting level: ~1,000 levels raised ``RecursionError`` (a 500),
as did invalid UTF-8 (``UnicodeDecodeError``). :class:`JsonRequest` replaces the decoding step:

- a body nested deeper than ``[gateway] max_json_depth`` arrays and objects (64 by default;
  the app keeps the setting in ``app.state.max_json_depth``), or not valid UTF-8, or not JSON is
  400 ``malformed_json`` (raised as ``SerializationException``, which litestar wraps
  in the 400 that :mod:`trine_gateway.errors` recognises);
- a body whose route declares a struct (``JSONBody[StartRunBody]``) is decoded straight into it
  with msgspec's strict rules, so a string where a number is declared is 400
  ``invalid_request`` naming the field. The struct is what the handler receives: litestar's own
  conversion passes an instance of the declared type through unchanged.

The depth check costs two ``bytes.count`` calls on an ordinary body: only a body holding more
brackets than the limit is measured, by deleting innermost empty pairs level by level (C-speed
passes, at most ``max_json_depth`` of them) once strings are cut out.
"""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException
from litestar.types import Empty

from trine_gateway.settings import MAX_JSON_DEPTH

DEFAULT_DEPTH: int = MAX_JSON_DEPTH.default

_KEEP = b'[]{}"'
_OPENING = b"[{"
_RUNS = re.compile(rb"[\[{]+|[\]}]+")
_LEAF_SHARE = 20
"""Leaf passes go on while each deletes at least 1/20 of what is left: a C-speed pass costs
about as much per byte as a Python step per run divided by 100, and that share balances the two
at their worst (about 15 ms each for 1 MB)."""
_NOT_KEPT = bytes(b for b in range(256) if b not in _KEEP)


def too_deep(body: bytes, limit: int = DEFAULT_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit``. Brackets
    inside strings do not count; a body that is not JSON may answer either way (the decoder
    refuses it next).

    C-speed passes over bytes first: escaped backslashes and then escaped quotes are dropped
    (JSON escapes pair left to right, so what remains of ``\\"`` is a real quote), all but
    brackets and quotes are deleted, and the strings (now quote, brackets, quote) are cut out.
    Passes then delete the innermost ``[]``/``{}`` pairs, one level each (the leaves, most of a
    document's brackets) while they delete enough (:data:`_LEAF_SHARE`); the depth of what is
    left is summed run by run. About 1 ms for 100 KB of 4,000 small objects (decoding them:
    4-7 ms); at most a few tens of ms for a 1 MB body built to be slow."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # most strings hold no bracket and are now "": dropping adjacent quotes keeps the pairing
    kept = unescaped.translate(None, _NOT_KEPT).replace(b'""', b"")
    brackets = b"".join(kept.split(b'"')[0::2])
    levels = 0
    while brackets and levels <= limit:
        # one level per pass: a pair marked "x" cannot make its neighbours a pair in this pass
        before = len(brackets)
        brackets = brackets.replace(b"[]", b"x").replace(b"{}", b"x").replace(b"x", b"")
        if len(brackets) == before:
            break
        levels += 1
        if (before - len(brackets)) * _LEAF_SHARE < before:
            break  # few leaves left, so few runs: counting them is now the cheaper way
    if levels > limit:
        return True  # a pair was still there to delete after `limit` levels of them
    depth = levels
    for run in _RUNS.finditer(brackets):
        if run[0][0] in _OPENING:
            depth += len(run[0])
            if depth > limit:
                return True
        else:
            depth -= len(run[0])
    return False


def decode(body: bytes, target: Any = Any, max_depth: int = DEFAULT_DEPTH) -> Any:
    """``body`` decoded as ``target`` (any JSON value by default), strictly.

    Raises ``SerializationException`` (400 ``malformed_json``) for text that is not JSON, not
    UTF-8 or nested deeper than ``max_depth``, and ``ValidationException`` (400
    ``invalid_request``, the field named) for JSON of the wrong shape."""
    if too_deep(body, max_depth):
        raise SerializationException(
            f"nested deeper than {max_depth} arrays and objects ({MAX_JSON_DEPTH.key})"
        )
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
                depth = self.app.state.get("max_json_depth", DEFAULT_DEPTH)
                self._json = self._connection_state.json = decode(body or b"null", target, depth)
        return self._json


__all__ = ["DEFAULT_DEPTH", "JsonRequest", "decode", "too_deep"]
