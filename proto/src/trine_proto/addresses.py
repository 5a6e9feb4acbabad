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


def host_port(address: str) -> tuple[str, int]:
    """``[scheme://]host:port`` (``[v6]:port`` too) into its parts, for the worker transports
    whose addresses are a host and port (``grpc://``, ``tcp://``); a clear error for anything
    else."""
    text = worker_address(address).partition("://")[2]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        scheme = worker_scheme(address)
        raise ValueError(f"a worker address is [{scheme}://]host:port, not {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
