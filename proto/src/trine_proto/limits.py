"""A maximum gRPC message size, refused from the 5-byte length prefix, before any body is read.

grpclib 0.4.9 has no such option (neither ``Server``, ``Channel`` nor ``Configuration``): its
``recv_message`` reads the prefix and then buffers ``length`` bytes whatever they are, acking
HTTP/2 flow control as it goes, so one 400 MB message costs 400 MB (+850 MB measured on the
worker port). :func:`install` replaces the function grpclib's server and client streams call with
one that first compares the prefix with the codec's ``max_message_bytes``
(:class:`BoundedCodec`) and raises ``RESOURCE_EXHAUSTED`` naming both sizes; a codec without
that attribute (any other grpclib user in the process) reads as before.

Why a message may be much larger than one payload: a ``WorkItem`` carries the run's input and
its whole journal (every step result, each up to ``max_payload_bytes``), and a worker's report
may batch several results; so :func:`derived_limit` allows 64 payloads (64 MiB by default).
"""

from __future__ import annotations

import struct
from typing import Any

import grpclib.client
import grpclib.server
import grpclib.stream
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from trine_proto.codec import GrpcCodec

PAYLOADS_PER_MESSAGE = 64
"""How many full-size payloads a message may carry when no explicit limit is set."""
MIN_MESSAGE_BYTES = 4 << 20
"""The derived limit's floor (gRPC's customary default)."""


def too_large(length: int, limit: int, setting: str) -> str:
    """The words of a refusal of a message over the limit, the same on every wire."""
    return f"a message of {length} bytes exceeds the limit of {limit} bytes ({setting})"


def derived_limit(max_payload_bytes: int, explicit: int = 0) -> int:
    """``explicit`` if positive, else ``PAYLOADS_PER_MESSAGE`` payloads (at least 4 MiB)."""
    if explicit > 0:
        return explicit
    return max(MIN_MESSAGE_BYTES, PAYLOADS_PER_MESSAGE * max_payload_bytes)


class BoundedCodec(GrpcCodec):
    """:class:`GrpcCodec` for a server or channel that refuses messages over ``max_message_bytes``
    (the limit may be changed later, e.g. once a peer says what it allows)."""

    def __init__(self, max_message_bytes: int, setting: str = "grpc.max_message_bytes") -> None:
        install()
        self.max_message_bytes = max_message_bytes
        self.setting = setting


async def _recv_message(stream: Any, codec: Any, message_type: Any) -> Any:
    """grpclib's ``recv_message``, refusing a message over the codec's limit from its prefix."""
    limit = getattr(codec, "max_message_bytes", 0)
    if not limit:
        return await _original(stream, codec, message_type)
    meta = await stream.recv_data(5)
    if not meta:
        return None
    compressed, length = struct.unpack(">?I", meta)
    if compressed:
        raise NotImplementedError("Compression not implemented")  # as grpclib says
    if length > limit:
        setting = getattr(codec, "setting", "grpc.max_message_bytes")
        raise GRPCError(Status.RESOURCE_EXHAUSTED, too_large(length, limit, setting))
    data = await stream.recv_data(length)
    if len(data) != length:
        raise GRPCError(Status.INTERNAL, f"a message ended after {len(data)} of {length} bytes")
    return codec.decode(data, message_type)


_original = grpclib.stream.recv_message


def install() -> None:
    """Make grpclib's server and client streams read through :func:`_recv_message` (their
    modules' own names for ``grpclib.stream.recv_message``; idempotent)."""
    for module in (grpclib.server, grpclib.client):
        setattr(module, "recv_message", _recv_message)  # noqa: B010 (not exported: mypy)
