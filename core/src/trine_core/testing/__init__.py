"""Test helpers for trine and its plugins (``pip install trine-core[testing]``).

- :func:`free_port`: a loopback port nobody listens on, for a server a test starts.
- :func:`occupied_port`: a loopback port something listens on, for a "port in use" test.
- :func:`eventually`: poll a condition no test can await (a connection accepted, a session
  ended in another task) until it holds.
- :mod:`trine_core.testing.contracts`: the contract suites every ``Backend`` and ``Dispatcher``
  (the engine, each transport, each fake, a third party's) passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

POLL_S = 0.01


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


async def eventually(condition: Callable[[], object], what: str, timeout_s: float = 5.0) -> None:
    """Return once ``condition()`` is true, checked every ``POLL_S``; an AssertionError saying
    ``what`` did not happen after ``timeout_s``. Only for a change nothing signals: where an
    event or a future exists, await that instead (a poll is slower and hides a missed wake-up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"{what}: still not so after {timeout_s:g}s")
        await asyncio.sleep(POLL_S)


__all__ = ["eventually", "free_port", "occupied_port"]
