"""Test helpers for trine and its plugins (``pip install trine-core[testing]``).

- :func:`free_port`: a loopback port nobody listens on, for a server a test starts.
- :func:`occupied_port`: a loopback port something listens on, for a "port in use" test.
- :mod:`trine_core.testing.contracts`: the contract suites every ``Backend`` and ``Dispatcher``
  (the engine, each transport, each fake, a third party's) passes.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's choice for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def occupied_port(port: int = 0) -> Iterator[int]:
    """Listen on 127.0.0.1:``port`` (any free one for 0) while the block runs; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock.getsockname()[1]


__all__ = ["free_port", "occupied_port"]
