"""The ``tcp://`` worker wire: ``trine.v1`` worker messages as length-prefixed frames on one TCP
(or TLS) connection, without HTTP/2 or gRPC around them.

Both ends live in different distributions (the coordinator's side in ``trine-transport-tcp``, the
worker's in the SDK, which depends on trine-proto only), so the wire is defined once, here.

A connection, as the worker opens it::

    worker → coordinator   PREAMBLE, then a HELLO frame (the metadata, JSON), then frames
    coordinator → worker   frames

A frame is one byte of kind and four of big-endian length (:data:`HEADER`), then that many bytes:

- ``MESSAGE``: one encoded ``WorkerMessage`` (worker → coordinator) or ``CoordinatorMessage``;
- ``END``: the sender ended its side (empty). The coordinator's ``END`` ends the stream normally;
- ``ERROR`` (coordinator → worker only): the stream ends with an error, its body
  ``code NUL message`` in UTF-8 (an ``ErrorCode`` and the words for the worker's owner);
- ``HELLO`` (worker → coordinator, once, first): ``authorization`` and ``trine-worker-instance``.

A receiver refuses a frame longer than its limit from the header, before reading the body. A
connection that ends without ``END`` or ``ERROR`` broke.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Mapping

PREAMBLE = b"trine-worker/1\n"
"""What a worker sends first: the wire and its version (a server of another wire, or another
version, refuses it before reading anything else)."""
ALPN = "trine-worker/1"
"""The ALPN protocol both ends offer over TLS: this wire, not HTTP/2 (``h2``, which the TLS
contexts offer for gRPC), so that nothing between them takes the connection for HTTP/2. An end
that offers only ``h2`` (an SDK before this) still connects: no protocol is then agreed, and the
preamble is what tells the wires apart."""
HEADER = struct.Struct(">BI")
MESSAGE = 1
END = 2
ERROR = 3
HELLO = 4
KINDS = frozenset({MESSAGE, END, ERROR, HELLO})
MAX_HELLO_BYTES = 64 * 1024
"""The largest ``HELLO`` a coordinator reads (a token and an instance id are far smaller)."""
BROKEN = (OSError, asyncio.IncompleteReadError)
"""What a read or write raises when the connection breaks (reset, closed, killed peer)."""


class FrameTooLarge(Exception):
    """A frame's header announced more than the receiver accepts; its body was not read."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"a frame of {length} bytes is over the limit of {limit} bytes")
        self.length = length
        self.limit = limit


class WireError(Exception):
    """The peer broke the wire: an unknown frame kind, a wrong preamble, a malformed ``HELLO``."""


def frame(kind: int, body: bytes = b"") -> bytes:
    """One frame's bytes."""
    return HEADER.pack(kind, len(body)) + body


def hello(metadata: Mapping[str, str]) -> bytes:
    """The preamble and ``HELLO`` frame a worker opens its connection with."""
    return PREAMBLE + frame(HELLO, json.dumps(dict(metadata)).encode())


def read_hello(body: bytes) -> dict[str, str]:
    """The metadata of a ``HELLO`` body, names lower-cased; :class:`WireError` if malformed."""
    try:
        metadata = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: a hostile "[[[[..."
        raise WireError("the worker's HELLO is not JSON") from None
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise WireError("the worker's HELLO is not an object of strings")
    try:  # JSON's "\ud800" decodes to a lone surrogate, which no text encoding takes
        "".join(k + v for k, v in metadata.items()).encode()
    except UnicodeEncodeError:
        raise WireError("the worker's HELLO has a string that is not Unicode text") from None
    return {name.lower(): value for name, value in metadata.items()}


def error(code: str, message: str) -> bytes:
    """An ``ERROR`` frame."""
    return frame(ERROR, f"{code}\0{message}".encode())


def read_error(body: bytes) -> tuple[str, str]:
    """The code and message of an ``ERROR`` body."""
    code, _, message = body.decode("utf-8", "replace").partition("\0")
    return code, message


async def read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    """The next frame's kind and body. Raises :class:`WireError` for a kind this wire does not
    have (the peer speaks another: a grpc:// port answers with HTTP/2), :class:`FrameTooLarge`
    for a body over ``limit`` (unread), ``asyncio.IncompleteReadError`` when the connection ends
    first."""
    kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
    if kind not in KINDS:
        raise WireError(f"a frame of unknown kind {kind}")
    if length > limit:
        raise FrameTooLarge(length, limit)
    return kind, await reader.readexactly(length) if length else b""
