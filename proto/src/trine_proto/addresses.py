"""Worker addresses, as both ends write them: ``scheme://host:port``, where a bare ``host:port`` is
:data:`DEFAULT_WORKER_SCHEME`'s (every address was gRPC's before worker transports were plugins).
Here so the coordinator (through trine_core) and the worker SDK (which depends on trine_proto
only) read an address the same way."""

from __future__ import annotations

DEFAULT_WORKER_SCHEME = "grpc"


def worker_address(address: str) -> str:
    """``address`` with its scheme written out (and no surrounding blanks)."""
    address = address.strip()
    return address if "://" in address else f"{DEFAULT_WORKER_SCHEME}://{address}"


def worker_scheme(address: str) -> str:
    """The scheme of a worker address, lower-cased: the name of the transport that carries it."""
    return worker_address(address).partition("://")[0].lower()
