"""``Worker``: registers workflow functions with the coordinator and runs what it dispatches.

One bidirectional gRPC stream per process carries everything (docs/internals.md, "The worker
stream"): ``Register`` then ``Registered``, ``Dispatch`` of work items, reports and their acks,
heartbeats, ``Drain``. The worker keeps that stream up for as long as it serves: when the
coordinator is not there yet or goes away, it reconnects with exponential backoff and jitter, and
the runs it had in flight are cancelled (the coordinator releases their leases, so they are
dispatched again and replay from their journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, overload

import betterproto2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from trine_proto.codec import GrpcCodec
from trine_proto.trine.v1 import (
    CoordinatorMessage,
    Drain,
    FunctionSpec,
    Heartbeat,
    Register,
    Registered,
    WorkerMessage,
    WorkItem,
)

from ._runner import FunctionDef, execute, make_context
from ._session import RunReporter, Session
from ._version import __version__
from .context import Context
from .retry import RetryPolicy

log = logging.getLogger("trine.worker")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

CONNECT = "/trine.v1.WorkerService/Connect"
DEFAULT_ADDRESS = "127.0.0.1:7481"
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
DEFAULT_HEARTBEAT_MS = 5_000
# After we half-close the stream at the end of a drain, how long the coordinator has to close its
# side, and how long cancelled runs have to unwind, before we stop waiting for them.
CLOSE_TIMEOUT = 5.0


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; a clear error for anything else."""
    text = address.strip().removeprefix("grpc://").removeprefix("http://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a worker address is host:port, not {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Worker:
    """A process that serves workflow functions to a trine coordinator.

    ``worker_id`` defaults to ``hostname-pid`` (unique per process: a second session with the
    same id fences the first), ``address`` to ``$TRINE_WORKER_ADDR`` or ``127.0.0.1:7481``.
    ``max_concurrency`` bounds the runs in flight at once; ``drain_timeout`` (seconds) bounds how
    long a graceful stop waits for them. ``max_payload_bytes`` should match the runtime's limit:
    a step output over it fails the step at once instead of being sent only to be refused.
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
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.address = address or os.environ.get("TRINE_WORKER_ADDR") or DEFAULT_ADDRESS
        self._host, self._port = parse_address(self.address)
        self.max_concurrency = max_concurrency
        self.drain_timeout = drain_timeout
        self.max_payload_bytes = max_payload_bytes
        self.register_timeout = register_timeout
        self._functions: dict[str, FunctionDef] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, Context] = {}  # by lease id, for cancellation notices
        self._stop: asyncio.Event | None = None
        self._draining = False
        self._signals = 0
        self._outage_since: float | None = None
        self._session_registered = False
        self._registered_event: asyncio.Event | None = None

    # -- registration ----------------------------------------------------------------------------

    @overload
    def function(self, fn: F, /) -> F: ...

    @overload
    def function(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]: ...

    def function(
        self,
        fn: Callable[..., Awaitable[Any]] | None = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Register an ``async def f(ctx, input)`` as a workflow, as ``@worker.function`` or
        ``@worker.function(name=..., retry=..., timeout=...)``. ``retry`` is the default policy
        of its steps (the runtime's default when omitted); ``timeout`` (seconds) the default run
        timeout of its runs (a run past it fails with ``RunTimeout``). Returns the function
        unchanged."""
        timeout_ms = 0
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            if not math.isfinite(seconds) or seconds <= 0:
                raise ValueError(f"a function's timeout must be positive seconds, not {timeout!r}")
            timeout_ms = math.ceil(seconds * 1000)

        def register(f: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            if not inspect.iscoroutinefunction(f):
                raise TypeError(f"{f!r} must be an async function (async def)")
            key = name or f.__name__
            if key in self._functions:
                raise ValueError(f"a function named {key!r} is already registered")
            self._functions[key] = FunctionDef(key, f, retry, timeout_ms)
            return f

        return register(fn) if fn is not None else register

    @property
    def functions(self) -> Mapping[str, FunctionDef]:
        """The registered workflows by name."""
        return dict(self._functions)

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
        self._draining = False
        self._signals = 0
        self._outage_since = None
        if self._registered_event is None:
            self._registered_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        handle_signals = handle_signals and threading.current_thread() is threading.main_thread()
        if handle_signals:
            for sig in signals:
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._reconnect_loop()
        finally:
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
            for task in self._runs.values():
                task.cancel()

    async def _reconnect_loop(self) -> None:
        assert self._stop is not None
        delay = INITIAL_BACKOFF
        while not self._stop.is_set():
            self._session_registered = False
            unexpected = False
            try:
                reason = await self._session()
            except (OSError, GRPCError, StreamTerminatedError, ProtocolError, TimeoutError) as exc:
                reason = _describe(exc)
            except Exception as exc:
                reason, unexpected = _describe(exc), True
            if self._registered_event is not None:
                self._registered_event.clear()
            if self._stop.is_set():
                break
            if self._session_registered:
                delay = INITIAL_BACKOFF
                self._outage_since = time.monotonic()
                log.warning(
                    "lost the coordinator at %s (%s); reconnecting",
                    self.address,
                    reason,
                    exc_info=unexpected,
                )
            elif self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning(
                    "cannot reach the coordinator at %s (%s); retrying until it answers",
                    self.address,
                    reason,
                    exc_info=unexpected,
                )
            else:
                log.debug("coordinator at %s still unreachable (%s)", self.address, reason)
            pause = delay * random.uniform(0.5, 1.0)
            delay = min(delay * 2, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    # -- one session -----------------------------------------------------------------------------

    async def _session(self) -> str:
        """Connect, register, serve until the stream ends; why it ended. Raises when the
        connection or the stream fails."""
        channel = Channel(self._host, self._port, codec=GrpcCodec())
        try:
            async with channel.request(
                CONNECT, Cardinality.STREAM_STREAM, WorkerMessage, CoordinatorMessage
            ) as stream:
                # grpclib: open the HTTP/2 stream before reading, or the first read hangs.
                await stream.send_request()
                session = Session(stream)
                writer = asyncio.create_task(session.write_loop(), name="trine-worker-writer")
                try:
                    session.send(WorkerMessage(register=self._register_message()))
                    registered = await asyncio.wait_for(
                        _first_registered(stream), self.register_timeout
                    )
                    self._on_registered(registered)
                    interval = (registered.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS) / 1000
                    reason = await self._serve_session(stream, session, writer, interval)
                finally:
                    await self._close_session(session, writer)
                if not (session.half_closed and session.remote_ended):
                    # On a clean exit grpclib waits for the trailers, and raises "Outgoing stream
                    # was not ended" unless we ended our side: unless both sides ended, reset.
                    with contextlib.suppress(Exception):
                        await stream.cancel()
                return reason
        finally:
            channel.close()

    def _register_message(self) -> Register:
        return Register(
            worker_id=self.worker_id,
            functions=[
                FunctionSpec(
                    name=d.name,
                    retry=d.retry.to_proto() if d.retry else None,
                    timeout_ms=d.timeout_ms,
                )
                for d in self._functions.values()
            ],
            max_concurrency=self.max_concurrency,
            sdk_version=f"trine-python/{__version__}",
        )

    def _on_registered(self, registered: Registered) -> None:
        self._session_registered = True
        outage = ""
        if self._outage_since is not None:
            outage = f" after {time.monotonic() - self._outage_since:.1f}s without a coordinator"
            self._outage_since = None
        log.info(
            "registered with the coordinator at %s as %s (session %s; functions: %s)%s",
            self.address,
            self.worker_id,
            registered.session_id,
            ", ".join(self._functions),
            outage,
        )
        if self._registered_event is not None:
            self._registered_event.set()

    async def _serve_session(
        self, stream: Any, session: Session, writer: asyncio.Task[None], interval: float
    ) -> str:
        reader = asyncio.create_task(self._read_loop(stream, session), name="trine-worker-reader")
        helpers = [
            asyncio.create_task(self._heartbeat_loop(session, interval)),
            asyncio.create_task(self._drain_when_asked(session)),
        ]
        aborted = asyncio.create_task(session.aborted.wait())
        try:
            done, _ = await asyncio.wait(
                {reader, writer, aborted}, return_when=asyncio.FIRST_COMPLETED
            )
            if aborted in done:
                return session.abort_reason
            if writer in done and not writer.cancelled() and writer.exception() is None:
                # We half-closed after a drain: the coordinator closes its side in answer.
                await asyncio.wait({reader}, timeout=CLOSE_TIMEOUT)
            for side in (reader, writer):
                error = side.exception() if side.done() and not side.cancelled() else None
                if error is not None:
                    raise error
            return "the coordinator closed the stream"
        finally:
            for task in (reader, aborted, *helpers):
                task.cancel()
            await asyncio.gather(reader, aborted, *helpers, return_exceptions=True)

    async def _read_loop(self, stream: Any, session: Session) -> None:
        while True:
            message = await stream.recv_message()
            if message is None:
                session.remote_ended = True
                return
            kind, value = betterproto2.which_one_of(message, "message")
            if kind == "report_ack":
                session.on_ack(value)
            elif kind == "dispatch":
                self._start_run(value, session)
            elif kind == "cancel":
                ctx = self._contexts.get(value.lease_id)
                if ctx is not None:
                    ctx.log.info("the run is being cancelled")
                    ctx.request_cancel()
            else:
                log.debug("ignoring a %r message from the coordinator", kind)

    async def _heartbeat_loop(self, session: Session, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            session.send(WorkerMessage(heartbeat=Heartbeat()))

    async def _drain_when_asked(self, session: Session) -> None:
        assert self._stop is not None
        await self._stop.wait()
        self._draining = True
        session.send(WorkerMessage(drain=Drain()))
        runs = set(self._runs.values())
        if runs:
            log.info("draining: waiting for %d runs in flight", len(runs))
            _, pending = await asyncio.wait(runs, timeout=self.drain_timeout)
            if pending:
                log.warning(
                    "drain timeout (%.0fs): cancelling %d runs; they will be dispatched again",
                    self.drain_timeout,
                    len(pending),
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        log.info("drained; closing the stream")
        session.end()

    async def _close_session(self, session: Session, writer: asyncio.Task[None]) -> None:
        """Cancel what this session had in flight; their leases are released with the stream."""
        session.close()
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        if runs:
            log.info("cancelled %d runs in flight; they will be dispatched again", len(runs))
            _, stuck = await asyncio.wait(runs, timeout=CLOSE_TIMEOUT)
            if stuck:
                log.warning("%d runs did not stop when cancelled (blocking code?)", len(stuck))
        if not writer.done():
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    def _start_run(self, item: WorkItem, session: Session) -> None:
        run, lease = item.run, item.lease
        if run is None or lease is None:
            log.error("dispatch without a run or a lease: %r", item)
            return
        if self._draining or session.closed:
            # The coordinator sent it before it saw our Drain; its lease goes back with the stream.
            log.debug("not starting run %s: draining", run.id)
            return
        definition = self._functions.get(run.function)
        if definition is None:
            log.error(
                "dispatched run %s of %r, which this worker does not serve", run.id, run.function
            )
            return
        reporter = RunReporter(session, run.id, lease.id)
        ctx = make_context(definition, item, reporter, max_payload_bytes=self.max_payload_bytes)
        task = asyncio.create_task(
            execute(definition, item, ctx, reporter, max_payload_bytes=self.max_payload_bytes),
            name=f"trine-run-{run.id}",
        )
        self._runs[lease.id] = task
        self._contexts[lease.id] = ctx
        task.add_done_callback(lambda t: self._run_done(lease.id, run.id, t))

    def _run_done(self, lease_id: str, run_id: str, task: asyncio.Task[None]) -> None:
        if self._runs.get(lease_id) is task:
            del self._runs[lease_id]
            self._contexts.pop(lease_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("run %s crashed in the SDK", run_id, exc_info=exc)


async def _first_registered(stream: Any) -> Registered:
    """The coordinator's answer to ``Register``; anything else first is a protocol error."""
    message = await stream.recv_message()
    if message is None:
        raise ConnectionError("the coordinator closed the stream instead of registering us")
    kind, value = betterproto2.which_one_of(message, "message")
    if kind != "registered":
        raise ConnectionError(f"the coordinator sent {kind or 'nothing'!r} before Registered")
    registered: Registered = value
    return registered


def _describe(exc: BaseException) -> str:
    """A one-line reason for logs: GRPCError's status and message, else the class and text."""
    if isinstance(exc, GRPCError):
        return f"gRPC {exc.status.name}: {exc.message or ''}".strip()
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when the program has it installed (the SDK does not require it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
