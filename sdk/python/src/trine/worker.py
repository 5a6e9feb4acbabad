"""``Worker``: registers workflow functions with the coordinator and runs what it dispatches.

This module is the worker's public face: registration, configuration, and the process-level
life cycle (signals, graceful drain). Keeping the stream up is ``_connection``; the runs in
flight are ``_dispatch``; executing one run is ``_runner``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import secrets
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar, overload

from trine_proto.addresses import host_port, worker_scheme
from trine_proto.trine.v1 import VersioningMode, WorkflowErrorMode
from trine_proto.vocabulary import name_problem, timeout_to_ms

from . import _durations
from ._build import code_digest
from ._connection import Connection
from ._declared import NAME_ATTRIBUTE, input_type
from ._dispatch import InFlight
from ._lag import LagMonitor
from ._runner import FunctionDef
from .converter import Converter
from .retry import RetryPolicy
from .transport import connector_for

log = logging.getLogger("trine.worker")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

DEFAULT_ADDRESS = "127.0.0.1:7481"
HOST_PORT_SCHEMES = ("grpc", "tcp")
"""The built-in worker transports, whose addresses are checked here as ``host:port``."""
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
# Enough for a few dozen concurrent blocking calls (HTTP, a sync LLM client) per worker; threads
# cost memory, not CPU, while they wait.
DEFAULT_STEP_THREADS = 32
# ``@worker.function(versioning=..., on_workflow_error=...)``: the words, and what goes on the wire.
VERSIONING_MODES = {
    "auto_upgrade": VersioningMode.AUTO_UPGRADE,
    "pinned": VersioningMode.PINNED,
}
WORKFLOW_ERROR_MODES = {
    "block": WorkflowErrorMode.BLOCK,
    "fail": WorkflowErrorMode.FAIL,
}
# Well below the coordinator's limit (five heartbeat intervals, 5 s by default), yet well above
# what a healthy loop ever sees.
DEFAULT_LOOP_LAG_WARNING = 0.5


class Worker:
    """A process that serves workflow functions to a trine coordinator.

    ``worker_id`` defaults to ``$TRINE_WORKER_ID``, else ``hostname-pid-`` and 6 random hex
    digits, unique per process (two containers with the same hostname and PID 1 differ); while a
    worker holds an id, the coordinator refuses another worker registering it, so give each
    process its own.
    ``address`` defaults to ``$TRINE_WORKER_ADDR`` or ``127.0.0.1:7481``; its scheme names the
    worker transport (``grpc://``, the default; others from ``trine.worker_transports`` entry
    points, :mod:`trine.transport`).

    ``token`` (default ``$TRINE_TOKEN``) is the worker token the coordinator asks for when it has
    a tokens file (scope ``worker``; docs/security.md); it goes as ``authorization: Bearer`` on
    the stream. A refused worker logs one ERROR line saying why and keeps retrying slowly.
    ``max_concurrency`` bounds the runs in flight at once; ``drain_timeout`` (seconds) bounds how
    long a graceful stop waits for them. ``max_payload_bytes`` should match the runtime's limit:
    a step output over it fails the step at once instead of being sent only to be refused.

    ``step_threads`` is the size of the thread pool sync step functions run in (so they never
    block the event loop that carries heartbeats and every other run); more sync steps than that
    at once wait for a free thread. ``loop_lag_warning`` (seconds; None: off) is how long the
    event loop may be blocked (by blocking code in async code) before a WARNING names the
    workflow, the run and the step doing it; keep it well below five heartbeat intervals, after
    which the coordinator drops the worker.

    ``converter`` turns payloads into JSON and back into the types the code declares (default:
    ``trine.PydanticConverter``: JSON values, pydantic models, dataclasses, TypedDicts...).

    ``build_id`` names the code this worker serves (docs/versioning.md): a pinned run continues
    only on its build, and a blocked run resumes when another build registers its function. By
    default ``$TRINE_BUILD_ID``, else a digest of the source of the modules defining the
    registered functions (12 hex digits: the same across restarts of the same code, different
    after any edit of those modules), computed when the worker starts serving.
    """

    def __init__(
        self,
        *,
        worker_id: str | None = None,
        address: str | None = None,
        max_concurrency: int = 100,
        drain_timeout: float = 30.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        register_timeout: float = 10.0,
        step_threads: int = DEFAULT_STEP_THREADS,
        loop_lag_warning: float | None = DEFAULT_LOOP_LAG_WARNING,
        converter: Converter | None = None,
        build_id: str | None = None,
        token: str | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if step_threads < 1:
            raise ValueError("step_threads must be at least 1")
        if loop_lag_warning is not None and not (
            math.isfinite(loop_lag_warning) and loop_lag_warning > 0
        ):
            raise ValueError(
                f"loop_lag_warning must be positive seconds or None, not {loop_lag_warning!r}"
            )
        self.worker_id = worker_id or os.environ.get("TRINE_WORKER_ID") or default_worker_id()
        if (problem := name_problem(self.worker_id, "a worker_id")) is not None:
            raise ValueError(problem)  # the coordinator refuses it; said here, where it is set
        self._token = _checked_token(token if token is not None else os.environ.get("TRINE_TOKEN"))
        # Tells the coordinator that a registration is this worker reconnecting (it replaces its
        # own old session) rather than another worker with the same id (refused).
        self._instance = secrets.token_hex(8)
        self.address = address or os.environ.get("TRINE_WORKER_ADDR") or DEFAULT_ADDRESS
        self.max_concurrency = max_concurrency
        self.drain_timeout = drain_timeout
        self.max_payload_bytes = max_payload_bytes
        self.register_timeout = register_timeout
        self.step_threads = step_threads
        self.loop_lag_warning = loop_lag_warning
        self._functions: dict[str, FunctionDef] = {}
        self._runs = InFlight()
        if converter is not None:
            self._runs.converter = converter
        self._stop: asyncio.Event | None = None
        self._signals = 0
        self._registered_event: asyncio.Event | None = None
        if build_id is not None and not build_id.strip():
            raise ValueError("build_id must not be blank (None: $TRINE_BUILD_ID or a digest)")
        self._build_id = build_id or os.environ.get("TRINE_BUILD_ID") or None
        self._code_digest: str | None = None  # of the functions registered so far, when asked

    # -- registration ----------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        """The worker token sent to the coordinator (``Worker(token=...)``, else
        ``$TRINE_TOKEN``; None: none)."""
        return self._token

    @property
    def instance(self) -> str:
        """This ``Worker``'s random instance id, sent with each stream (never shown)."""
        return self._instance

    @property
    def address(self) -> str:
        """The coordinator's address this worker connects to, from its next ``serve()``:
        ``[scheme://]host:port``."""
        return self._address

    @address.setter
    def address(self, address: str) -> None:
        # A bad address, or a scheme no installed worker transport serves, fails here, not later.
        connector = connector_for(address)
        if worker_scheme(address) in HOST_PORT_SCHEMES:
            host_port(address)
        self._connector, self._address = connector, address

    @overload
    def function(self, fn: F, /) -> F: ...

    @overload
    def function(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        versioning: str = "auto_upgrade",
        on_workflow_error: str = "block",
    ) -> Callable[[F], F]: ...

    def function(
        self,
        fn: Callable[..., Awaitable[Any]] | None = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        versioning: str = "auto_upgrade",
        on_workflow_error: str = "block",
    ) -> Any:
        """Register an ``async def f(ctx, input)`` as a workflow, as ``@worker.function`` or
        ``@worker.function(name=..., retry=..., timeout=...)``. ``retry`` is the default policy
        of its steps (the runtime's default when omitted); ``timeout`` (seconds) the default run
        timeout of its runs (a run past it fails with ``RunTimeout``). Returns the function
        unchanged.

        ``versioning`` (docs/versioning.md): ``"auto_upgrade"`` (any build continues any run;
        keep changes safe with ``ctx.patched``) or ``"pinned"`` (a run continues only on the
        build it started on: the build of the first worker that reported for it).
        ``on_workflow_error``: ``"block"`` (a workflow error, such as a non-determinism or an
        exception the workflow's code raised outside any step, holds the run as ``blocked``
        until fixed code retries it) or ``"fail"`` (the run fails for good).
        """
        modes = (
            _choice("versioning", versioning, VERSIONING_MODES),
            _choice("on_workflow_error", on_workflow_error, WORKFLOW_ERROR_MODES),
        )
        timeout_ms = 0
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            if not math.isfinite(seconds) or seconds <= 0:
                raise ValueError(f"a function's timeout must be positive seconds, not {timeout!r}")
            timeout_ms = timeout_to_ms(_durations.span(seconds, "a function's timeout"))

        def register(f: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            if not inspect.iscoroutinefunction(f):
                raise TypeError(f"{f!r} must be an async function (async def)")
            key = name or f.__name__
            if (problem := name_problem(key, "a function's name")) is not None:
                raise ValueError(problem)
            if key in self._functions:
                raise ValueError(f"a function named {key!r} is already registered")
            self._functions[key] = FunctionDef(key, f, retry, timeout_ms, input_type(f), *modes)
            self._code_digest = None  # the code served changed
            # So ``ctx.run(f, ...)`` and ``client.run(f, ...)`` find the name it is served under.
            setattr(f, NAME_ATTRIBUTE, key)
            return f

        return register(fn) if fn is not None else register

    @property
    def functions(self) -> Mapping[str, FunctionDef]:
        """The registered workflows by name."""
        return dict(self._functions)

    @property
    def build_id(self) -> str:
        """The build this worker registers with: ``Worker(build_id=...)``, else
        ``$TRINE_BUILD_ID``, else a digest of the code of its functions (see ``Worker``)."""
        if self._build_id is not None:
            return self._build_id
        if self._code_digest is None:
            self._code_digest = code_digest(d.fn for d in self._functions.values())
        return self._code_digest

    @property
    def converter(self) -> Converter:
        """How this worker's payloads become JSON and come back as their declared types."""
        return self._runs.converter

    @property
    def in_flight(self) -> int:
        """Runs executing right now."""
        return len(self._runs)

    async def wait_registered(self) -> None:
        """Until the current (or next) session is registered; for tests and health checks."""
        if self._registered_event is None:
            self._registered_event = asyncio.Event()
        await self._registered_event.wait()

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and return (blocking).

        Configures stdlib logging at INFO on stderr when the program has not configured it.
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
            runner.run(self.serve())
        log.info("worker stopped")

    def shutdown(self) -> None:
        """Ask for a graceful stop: send ``Drain``, let in-flight runs finish (up to
        ``drain_timeout``), close the stream; ``serve()`` then returns. Safe to call any time."""
        if self._stop is not None:
            self._stop.set()

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Serve until ``shutdown()`` (or, with ``handle_signals``, SIGTERM/SIGINT: the first
        drains, a second cancels the runs still in flight)."""
        if not self._functions:
            raise RuntimeError("no functions registered: decorate some with @worker.function")
        self._stop = asyncio.Event()
        self._runs.draining = False
        self._runs.build_id = self.build_id  # computed once, before the first registration
        self._signals = 0
        if self._registered_event is None:
            self._registered_event = asyncio.Event()
        connection = Connection(
            self,
            self._functions,
            self._runs,
            connector=self._connector,
            stop=self._stop,
            registered=self._registered_event,
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        handle_signals = handle_signals and threading.current_thread() is threading.main_thread()
        if handle_signals:
            for sig in signals:
                loop.add_signal_handler(sig, self._on_signal, sig)
        executor = ThreadPoolExecutor(self.step_threads, thread_name_prefix="trine-step")
        self._runs.executor = executor
        monitor = LagMonitor(self.loop_lag_warning) if self.loop_lag_warning else None
        if monitor is not None:
            monitor.start()
        try:
            await connection.run()
        finally:
            if monitor is not None:
                monitor.stop()
            # A step thread still running cannot be stopped; the process waits for it at exit.
            executor.shutdown(wait=False, cancel_futures=True)
            self._runs.executor = None
            if handle_signals:
                for sig in signals:
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: draining %d runs in flight (again to stop at once)", sig.name, len(self._runs)
            )
            self.shutdown()
        else:
            log.warning("%s: cancelling %d runs in flight", sig.name, len(self._runs))
            for task in self._runs.tasks():
                task.cancel()


def default_worker_id() -> str:
    """``hostname-pid-`` and 6 random hex digits: unique per process, even for containers that
    share a hostname and PID 1 (issue 13), still telling where the worker runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _checked_token(token: str | None) -> str | None:
    """``token`` stripped (None if blank); a ValueError now, rather than a refused stream
    later, if it cannot go in a header."""
    token = (token or "").strip()
    if not token:
        return None
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(
            "a worker token (Worker(token=...) or TRINE_TOKEN) is printable ASCII without spaces"
        )
    return token


def _choice(parameter: str, value: str, allowed: Mapping[str, Any]) -> Any:
    """``allowed[value]``, or a ValueError naming the parameter and the values it takes."""
    if value not in allowed:
        words = " or ".join(repr(word) for word in allowed)
        raise ValueError(f"{parameter} must be {words}, not {value!r}")
    return allowed[value]


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when the program has it installed (the SDK does not require it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
