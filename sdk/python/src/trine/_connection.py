"""Keeping the worker stream up: connect, register, serve one session, reconnect.

One bidirectional stream per process, opened by the worker transport of the address's scheme
(:mod:`trine.transport`; ``grpc://`` by default), carries everything (docs/internals.md, "The worker
stream"): ``Register`` then ``Registered``, ``Dispatch`` of work items, reports and their acks,
heartbeats, ``Drain``. When the coordinator is not there yet or goes away, the worker reconnects
with exponential backoff and jitter, and the runs it had in flight are cancelled: the coordinator
releases their leases with the stream, so they are dispatched again and replay from their
journal. An outage is logged once when it starts and once when it ends, not on every retry.

A refusal (issue 13: no worker token, or one the coordinator does not accept, functions the token
may not serve, a worker_id another live worker holds) is logged as one ERROR line saying what,
why and what to do, once per distinct refusal, and retried slowly (1 s doubling to 30 s, with
jitter) for as long as the worker runs: a token added to the coordinator's file and SIGHUP'd, or
the other worker gone, lets it in without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import betterproto2

from trine_proto.limits import derived_limit
from trine_proto.trine.v1 import (
    Drain,
    FunctionSpec,
    Heartbeat,
    Register,
    Registered,
    WorkerMessage,
)
from trine_proto.vocabulary import ErrorCode

from ._dispatch import InFlight
from ._runner import FunctionDef
from ._session import Session
from ._tls import worker_context
from ._version import __version__
from .transport import ConnectOptions, Connector, CoordinatorStream, StreamError

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("trine.worker")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
REFUSED_BACKOFF = 1.0
MAX_REFUSED_BACKOFF = 30.0
"""After a refusal, the first and the longest pause before trying again (doubling, jittered)."""
REFUSALS: dict[str, str] = {
    ErrorCode.UNAUTHENTICATED: "set TRINE_TOKEN (or Worker(token=...)) to a token with scope "
    "'worker' that is in the coordinator's tokens file",
    ErrorCode.PERMISSION_DENIED: "use a token whose scopes include 'worker' and whose 'functions' "
    "include every function this worker serves (or serve only those)",
    ErrorCode.WORKER_ID_IN_USE: "give each worker process its own worker_id (or leave it unset: "
    "the default is unique per process)",
    ErrorCode.INVALID_ARGUMENT: "the coordinator found this worker's stream invalid: change what "
    "the message names (a function's name or timeout, say) and restart it",
}
"""The error codes a coordinator refuses a worker with, and what the worker's owner can do."""
AUTHORIZATION = "authorization"
INSTANCE = "trine-worker-instance"
DEFAULT_HEARTBEAT_MS = 5_000
# After we half-close the stream at the end of a drain, how long the coordinator has to close its
# side, and how long cancelled runs have to unwind, before we stop waiting for them.
CLOSE_TIMEOUT = 5.0


class Connection:
    """The stream side of one ``Worker.serve()``, until ``stop`` is set and the last session is
    closed. It reads the worker's public settings where it uses them, so a setting changed on a
    serving worker applies from its next use.

    ``registered`` is set while a session is registered, for ``Worker.wait_registered``.
    """

    def __init__(
        self,
        worker: Worker,
        functions: Mapping[str, FunctionDef],
        runs: InFlight,
        *,
        connector: Connector,
        stop: asyncio.Event,
        registered: asyncio.Event,
    ) -> None:
        self._worker = worker
        self._functions = functions
        self._runs = runs
        self._connector = connector
        self._stop = stop
        self._registered = registered
        self._session_registered = False
        self._outage_since: float | None = None
        self._refusal: tuple[str, str] | None = None  # the last one logged
        # TRINE_TLS_CA / _CERT / _KEY: TLS to the coordinator; a bad file fails serve() now.
        self._tls = worker_context()

    async def run(self) -> None:
        """Hold a session until ``stop``, reconnecting whenever one ends."""
        delay = INITIAL_BACKOFF
        refused_delay = REFUSED_BACKOFF
        while not self._stop.is_set():
            self._session_registered = False
            unexpected = False
            refused: StreamError | None = None
            try:
                reason = await self._session()
            except StreamError as exc:
                reason = _describe(exc)
                refused = exc if exc.code in REFUSALS else None
            except (OSError, TimeoutError) as exc:  # ConnectionError: the transport's words
                reason = _describe(exc)
            except Exception as exc:
                reason, unexpected = _describe(exc), True
            self._registered.clear()
            if self._stop.is_set():
                break
            if self._session_registered:
                refused_delay = REFUSED_BACKOFF
            if refused is not None:
                self._log_refusal(refused)
                pause = refused_delay * random.uniform(0.8, 1.2)
                refused_delay = min(refused_delay * 2, MAX_REFUSED_BACKOFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                continue
            if self._session_registered:
                delay = INITIAL_BACKOFF
                self._outage_since = time.monotonic()
                log.warning(
                    "lost the coordinator at %s (%s); reconnecting",
                    self._worker.address,
                    reason,
                    exc_info=unexpected,
                )
            elif self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning(
                    "cannot reach the coordinator at %s (%s); retrying until it answers",
                    self._worker.address,
                    reason,
                    exc_info=unexpected,
                )
            else:
                log.debug("coordinator at %s still unreachable (%s)", self._worker.address, reason)
            pause = delay * random.uniform(0.5, 1.0)
            delay = min(delay * 2, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    def _log_refusal(self, error: StreamError) -> None:
        """One ERROR line per distinct refusal (what, why, what to do); a repeat at DEBUG."""
        key = (error.code, error.message)
        if key == self._refusal:
            log.debug("still refused by the coordinator (%s)", _describe(error))
            return
        self._refusal = key
        log.error(
            "the coordinator at %s refused worker %s %s: %s (%s). To fix: %s. Retrying "
            "with backoff (up to %gs) until it is admitted",
            self._worker.address,
            self._worker.worker_id,
            "with a token" if self._worker.token else "without a token",
            error.message or "no reason given",
            error.code,
            REFUSALS[error.code],
            MAX_REFUSED_BACKOFF,
        )

    def _metadata(self) -> dict[str, str]:
        """The stream's metadata: the worker's token, and the instance that tells the
        coordinator a reconnection of this worker from another worker with its id."""
        metadata = {INSTANCE: self._worker.instance}
        if self._worker.token:
            metadata[AUTHORIZATION] = f"Bearer {self._worker.token}"
        return metadata

    # -- one session -----------------------------------------------------------------------------

    async def _session(self) -> str:
        """Connect, register, serve until the stream ends; why it ended. Raises when the
        connection or the stream fails."""
        # A work item over the limit is refused from its length: it holds the run's journal, so
        # the limit is many payloads (trine_proto.limits), as on the coordinator.
        options = ConnectOptions(
            metadata=self._metadata(),
            max_message_bytes=derived_limit(self._worker.max_payload_bytes),
            tls=self._tls,
        )
        stream = await self._connector.connect(self._worker.address, options)
        try:
            session = Session(stream)
            writer = asyncio.create_task(session.write_loop(), name="trine-worker-writer")
            try:
                session.send(WorkerMessage(register=self._register_message()))
                registered = await asyncio.wait_for(
                    _first_registered(stream), self._worker.register_timeout
                )
                self._on_registered(registered)
                session.batches = registered.batches
                interval = (registered.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS) / 1000
                return await self._serve_session(stream, session, writer, interval)
            finally:
                await self._close_session(session, writer)
        finally:
            await stream.close()

    def _register_message(self) -> Register:
        build_id = self._worker.build_id
        return Register(
            worker_id=self._worker.worker_id,
            functions=[
                FunctionSpec(
                    name=d.name,
                    retry=d.retry.to_proto() if d.retry else None,
                    timeout_ms=d.timeout_ms,
                    versioning=d.versioning,
                    on_workflow_error=d.on_workflow_error,
                    build_id=build_id,
                )
                for d in self._functions.values()
            ],
            max_concurrency=self._worker.max_concurrency,
            sdk_version=f"trine-python/{__version__}",
            build_id=build_id,
            batches=True,
        )

    def _on_registered(self, registered: Registered) -> None:
        self._session_registered = True
        if self._refusal is not None:
            log.info("the coordinator at %s admits this worker now", self._worker.address)
            self._refusal = None
        outage = ""
        if self._outage_since is not None:
            outage = f" after {time.monotonic() - self._outage_since:.1f}s without a coordinator"
            self._outage_since = None
        log.info(
            "registered with the coordinator at %s as %s (build %s, session %s; functions: %s)%s",
            self._worker.address,
            self._worker.worker_id,
            self._worker.build_id,
            registered.session_id,
            ", ".join(self._functions),
            outage,
        )
        self._registered.set()

    async def _serve_session(
        self,
        stream: CoordinatorStream,
        session: Session,
        writer: asyncio.Task[None],
        interval: float,
    ) -> str:
        reader = asyncio.create_task(self._read_loop(stream, session), name="trine-worker-reader")
        helpers = [
            asyncio.create_task(_heartbeat_loop(session, interval)),
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

    async def _read_loop(self, stream: CoordinatorStream, session: Session) -> None:
        while True:
            message = await stream.receive()
            if message is None:
                return
            kind, value = betterproto2.which_one_of(message, "message")
            if value is None:
                log.debug("ignoring a %r message from the coordinator", kind)
            elif kind == "report_ack":
                session.on_ack(value)
            elif kind == "report_acks":
                for ack in value.acks:
                    session.on_ack(ack)
            elif kind == "dispatch":
                self._runs.start(value, session, self._functions, self._worker.max_payload_bytes)
            elif kind == "dispatches":
                for item in value.items:
                    self._runs.start(item, session, self._functions, self._worker.max_payload_bytes)
            elif kind == "cancel":
                self._runs.cancel_notice(value.lease_id)
            else:
                log.debug("ignoring a %r message from the coordinator", kind)

    async def _drain_when_asked(self, session: Session) -> None:
        await self._stop.wait()
        self._runs.draining = True
        session.send(WorkerMessage(drain=Drain()))
        runs = set(self._runs.tasks())
        if runs:
            drain_timeout = self._worker.drain_timeout
            log.info("draining: waiting for %d runs in flight", len(runs))
            _, pending = await asyncio.wait(runs, timeout=drain_timeout)
            if pending:
                log.warning(
                    "drain timeout (%.0fs): cancelling %d runs; they will be dispatched again",
                    drain_timeout,
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
        runs = self._runs.tasks()
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


async def _heartbeat_loop(session: Session, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        session.send(WorkerMessage(heartbeat=Heartbeat()))


async def _first_registered(stream: CoordinatorStream) -> Registered:
    """The coordinator's answer to ``Register``; anything else first is a protocol error."""
    message = await stream.receive()
    if message is None:
        raise ConnectionError("the coordinator closed the stream instead of registering us")
    kind, value = betterproto2.which_one_of(message, "message")
    if kind != "registered" or value is None:
        raise ConnectionError(f"the coordinator sent {kind or 'nothing'!r} before Registered")
    registered: Registered = value
    return registered


def _describe(exc: BaseException) -> str:
    """A one-line reason for logs: a StreamError's code and message, else the class and text."""
    if isinstance(exc, StreamError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
