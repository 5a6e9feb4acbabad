"""Fast protobuf encoding and decoding of the betterproto2 messages, through upb.

betterproto2 stays the schema and the API: every message trine handles is a betterproto2
dataclass. Its codec, though, is pure Python and walks every field with reflection (≈ 60 µs to
encode or decode a small ``Event`` on our machines), which made it the largest cost of a run.
Google's protobuf runtime (upb, in C) encodes the same schema about 20 times faster, so each
message class gets a converter to and from its upb twin (``_upb/…/*_pb2.py``, generated from the
same ``.proto`` files by ``proto/generate.sh``): a specialized function per class, built on
first use, that copies the fields in one constructor call. To encode, each nested message is
serialized on its own and appended (``_serializer`` says why). The bytes are ordinary protobuf,
those upb writes (but for the order of a map's entries, which upb does not fix either), so data
written by either codec is read by the other.

``encode(message)`` and ``decode(cls, data)`` are the storage and wire entry points;
:class:`GrpcCodec` plugs them into grpclib channels and servers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2
from grpclib.encoding.base import CodecBase

M = TypeVar("M", bound=betterproto2.Message)

_UPB_MODULES = (
    "trine_proto._upb.trine.v1.api_pb2",
    "trine_proto._upb.trine.v1.worker_pb2",
    "trine_proto._upb.trine.engine.v1.records_pb2",
)
_upb_by_name: dict[str, Any] = {
    descriptor.full_name: getattr(module, name)
    for module in map(importlib.import_module, _UPB_MODULES)
    for name, descriptor in module.DESCRIPTOR.message_types_by_name.items()
}
"""Every upb message class by its full protobuf name (``trine.v1.Run``)."""

_TYPE_MESSAGE = 11
_TYPE_ENUM = 14
_LENGTH_DELIMITED = 2  # the wire type of a message field

_encoders: dict[type, Callable[[Any], Any]] = {}
_serializers: dict[type, Callable[[Any], bytes]] = {}
_decoders: dict[type, Callable[[Any], Any]] = {}
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def encode(message: betterproto2.Message) -> bytes:
    """``message`` in the protobuf wire format (what ``bytes(message)`` returns, faster)."""
    return _serializer(type(message))(message)


def decode(cls: type[M], data: bytes) -> M:
    """A ``cls`` parsed from ``data`` (what ``cls.parse(data)`` returns, faster)."""
    upb_cls = _upb_class(cls)
    message: M = _decoder(cls)(upb_cls.FromString(data))
    return message


class GrpcCodec(CodecBase):
    """grpclib's protobuf codec (``application/grpc+proto``) on :func:`encode`/:func:`decode`:
    pass ``codec=GrpcCodec()`` to a ``grpclib`` ``Channel`` or ``Server``."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"message must be of type {message_type!r}, not {type(message)!r}")
        if _ours(message_type):
            return encode(message)
        data: bytes = message.SerializeToString()  # another schema's (e.g. gRPC health)
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        if _ours(message_type):
            return decode(message_type, data)
        return message_type.FromString(data)


_ours_by_type: dict[type, bool] = {}


def _ours(cls: type) -> bool:
    """A betterproto2 message of trine's schema with a upb twin (decided once per class: this
    runs for every gRPC message)."""
    found = _ours_by_type.get(cls)
    if found is None:
        found = _ours_by_type[cls] = (
            cls.__module__.startswith("trine_proto.")
            and issubclass(cls, betterproto2.Message)
            and _full_name(cls) in _upb_by_name
        )
    return found


# -- converters ------------------------------------------------------------------------------------


def _full_name(cls: type) -> str:
    """``trine_proto.trine.engine.v1.LogRecord`` → ``trine.engine.v1.LogRecord``: betterproto2
    names each module after its protobuf package."""
    return f"{cls.__module__.removeprefix('trine_proto.')}.{cls.__name__}"


def _upb_class(cls: type) -> Any:
    return _upb_by_name[_full_name(cls)]


def _fields(cls: type) -> list[tuple[str, Any, Any]]:
    """(attribute name, upb field descriptor, betterproto2 class of a message or enum field)."""
    meta = cls._betterproto  # type: ignore[attr-defined]
    by_number = {m.number: name for name, m in meta.meta_by_field_name.items()}
    fields = []
    for field in _upb_class(cls).DESCRIPTOR.fields:
        name = by_number[field.number]
        kind = None
        if field.type in (_TYPE_MESSAGE, _TYPE_ENUM):
            kind = meta.cls_by_field.get(name)
        fields.append((name, field, kind))
    return fields


def _encoder(cls: type) -> Callable[[Any], Any]:
    """``to_upb(message)``: the upb twin of a betterproto2 message, built in one call."""
    found = _encoders.get(cls)
    if found is not None:
        return found
    names: dict[str, Any] = {"U": _upb_class(cls), "int": int}
    plain: list[str] = []
    optional: list[str] = []
    lines: list[str] = []
    for name, field, _ in _fields(cls):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                names[f"enc_{name}"] = _lazy(_encoder, cls, name, value=True)
                plain.append(f"{name}={{k: enc_{name}(v) for k, v in m.{name}.items()}}")
            else:
                plain.append(f"{name}=m.{name}")
        elif field.type == _TYPE_MESSAGE:
            names[f"enc_{name}"] = _lazy(_encoder, cls, name)
            if field.is_repeated:
                plain.append(f"{name}=[enc_{name}(v) for v in m.{name}]")
            else:
                optional.append(name)
        elif field.containing_oneof is not None:
            optional.append(name)  # a scalar in a oneof: None when another member is set
        elif field.type == _TYPE_ENUM and not field.is_repeated:
            plain.append(f"{name}=int(m.{name})")
        else:
            plain.append(f"{name}=m.{name}")
    lines.append("def to_upb(m):")
    if optional:
        lines.append(f"    kw = dict({', '.join(plain)})")
        for name in optional:
            lines.append(f"    v = m.{name}")
            lines.append("    if v is not None:")
            convert = f"enc_{name}(v)" if f"enc_{name}" in names else "v"
            lines.append(f"        kw[{name!r}] = {convert}")
        lines.append("    return U(**kw)")
    else:
        lines.append(f"    return U({', '.join(plain)})")
    function: Callable[[Any], Any] = _compile("\n".join(lines), names, "to_upb")
    _encoders[cls] = function
    return function


def _serializer(cls: type) -> Callable[[Any], bytes]:
    """``serialize(message)``: its protobuf bytes, built in one call. With no message field set,
    the upb twin is built in one constructor call and serialized. Otherwise the scalar fields go
    to the twin (one constructor call per run of them between message fields that are set), and
    each message field is serialized the same way on its own and appended, length-delimited:
    a upb constructor copies every message it is given, so building the twin of a nested message
    copied each level again for every level above it (``_encoder``: a report's log record, five
    levels deep, took 1.4 times as long). The parts are joined once per level, so the cost grows
    with the size, not its square. Fields come in field-number order, as upb writes them; only a
    map's entries may come in another order (upb's own order is its hash table's, not fixed)."""
    found = _serializers.get(cls)
    if found is not None:
        return found
    names: dict[str, Any] = {"U": _upb_class(cls), "int": int, "varint": _varint}
    steps: list[tuple[str, str, Any]] = []  # ("scalar" | "oneof" | "message", name, value)
    for name, field, _ in sorted(_fields(cls), key=lambda found: found[1].number):
        if _is_message(field):
            names[f"key_{name}"] = _varint(field.number << 3 | _LENGTH_DELIMITED)
            names[f"ser_{name}"] = _lazy(_serializer, cls, name)
            steps.append(("message", name, field.is_repeated))
        elif field.message_type is not None:  # a map
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                names[f"enc_{name}"] = _lazy(_encoder, cls, name, value=True)
                steps.append(("scalar", name, f"{{k: enc_{name}(v) for k, v in m.{name}.items()}}"))
            else:
                steps.append(("scalar", name, f"m.{name}"))
        elif field.containing_oneof is not None:
            steps.append(("oneof", name, None))  # a scalar in a oneof: None unless it is set
        elif field.type == _TYPE_ENUM and not field.is_repeated:
            steps.append(("scalar", name, f"int(m.{name})"))
        else:
            steps.append(("scalar", name, f"m.{name}"))
    lines = ["def serialize(m):"]
    if all(kind != "oneof" for kind, _, _ in steps):
        every = ", ".join(f"{name}={value}" for kind, name, value in steps if kind == "scalar")
        unset = [
            f"not m.{name}" if repeated else f"m.{name} is None"
            for kind, name, repeated in steps
            if kind == "message"
        ]
        if unset:
            lines.append(f"    if {' and '.join(unset)}:")
        lines.append(f"{'    ' * (2 if unset else 1)}return U({every}).SerializeToString()")
    if any(kind != "scalar" for kind, _, _ in steps):
        lines.extend(["    parts = []", "    kw = {}"])
        for kind, name, value in steps:
            if kind == "scalar":
                lines.append(f"    kw[{name!r}] = {value}")
                continue
            if kind == "oneof":
                lines.extend(
                    [f"    v = m.{name}", "    if v is not None:", f"        kw[{name!r}] = v"]
                )
                continue
            if value:  # repeated
                lines.append(f"    for v in m.{name}:")
            else:
                lines.extend([f"    v = m.{name}", "    if v is not None:"])
            lines.extend(
                [
                    "        if kw:",
                    "            parts.append(U(**kw).SerializeToString())",
                    "            kw = {}",
                    f"        data = ser_{name}(v)",
                    f"        parts += (key_{name}, varint(len(data)), data)",
                ]
            )
        lines.extend(["    if kw:", "        parts.append(U(**kw).SerializeToString())"])
        lines.append("    return b''.join(parts)")
    function: Callable[[Any], bytes] = _compile("\n".join(lines), names, "serialize")
    _serializers[cls] = function
    return function


def _is_message(field: Any) -> bool:
    """A message field, repeated or not (a map is a repeated message field to upb: not this)."""
    return bool(field.type == _TYPE_MESSAGE) and not (
        field.message_type is not None and field.message_type.GetOptions().map_entry
    )


def _varint(value: int) -> bytes:
    """``value`` (not negative) as a protobuf varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    data = bytearray()
    while value >= 0x80:
        data.append(value & 0x7F | 0x80)
        value >>= 7
    data.append(value)
    return bytes(data)


def _decoder(cls: type) -> Callable[[Any], Any]:
    """``from_upb(u)``: the betterproto2 message of a upb one, built in one call."""
    found = _decoders.get(cls)
    if found is not None:
        return found
    names: dict[str, Any] = {"C": cls, "enum": _enum}
    args = []
    for name, field, kind in _fields(cls):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                names[f"dec_{name}"] = _lazy(_decoder, cls, name, value=True)
                args.append(f"{name}={{k: dec_{name}(v) for k, v in u.{name}.items()}}")
            else:
                args.append(f"{name}=dict(u.{name})")
        elif field.type == _TYPE_MESSAGE:
            names[f"dec_{name}"] = _lazy(_decoder, cls, name)
            if field.is_repeated:
                args.append(f"{name}=[dec_{name}(v) for v in u.{name}]")
            else:
                args.append(f"{name}=dec_{name}(u.{name}) if u.HasField({name!r}) else None")
        elif field.is_repeated:
            if field.type == _TYPE_ENUM:
                names[f"E_{name}"] = kind
                args.append(f"{name}=[enum(E_{name}, v) for v in u.{name}]")
            else:
                args.append(f"{name}=list(u.{name})")
        else:
            value = f"u.{name}"
            if field.type == _TYPE_ENUM:
                names[f"E_{name}"] = kind
                value = f"enum(E_{name}, u.{name})"
            if field.containing_oneof is not None:
                value = f"{value} if u.HasField({name!r}) else None"
            args.append(f"{name}={value}")
    source = f"def from_upb(u):\n    return C({', '.join(args)})"
    function: Callable[[Any], Any] = _compile(source, names, "from_upb")
    _decoders[cls] = function
    return function


def _field_class(cls: type, name: str, value: bool) -> type:
    meta = cls._betterproto  # type: ignore[attr-defined]
    if value:
        return meta.cls_by_field[f"{name}.value"]  # type: ignore[no-any-return]
    return meta.cls_by_field[name]  # type: ignore[no-any-return]


R = TypeVar("R")


def _lazy(
    build: Callable[[type], Callable[[Any], R]], cls: type, name: str, value: bool = False
) -> Callable[[Any], R]:
    """``build``'s converter (``_encoder``, ``_serializer``, ``_decoder``) of the class of
    ``cls``'s field ``name`` (of its map's values with ``value``), resolved on first call:
    message types may refer to each other."""
    target: list[Callable[[Any], R]] = []

    def convert_field(message: Any) -> R:
        if not target:
            target.append(build(_field_class(cls, name, value)))
        return target[0](message)

    return convert_field


def _enum(cls: Any, value: int) -> Any:
    """The enum member, or the bare number for a value this schema does not know."""
    try:
        return cls(value)
    except ValueError:
        return value


def _compile(source: str, names: dict[str, Any], function: str) -> Callable[[Any], Any]:
    scope: dict[str, Any] = {}
    exec(compile(source, f"<trine_proto.codec {function}>", "exec"), names, scope)
    compiled: Callable[[Any], Any] = scope[function]
    return compiled
