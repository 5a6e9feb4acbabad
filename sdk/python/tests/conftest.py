"""A scripted fake coordinator: a real grpclib ``WorkerServiceBase`` server on a loopback port.

The SDK is tested alone, so this stands in for the coordinator: it answers ``Register``, lets a
test dispatch work items, records every message, and acks each report with an outcome the test
chooses (``ack_policy``). Tests wait on its ``until(predicate)``, which wakes on every message
received, never on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import betterproto2
import pytest
from grpclib.server import Server

import trine
from trine_proto.trine.v1 import (
    CancelNotice,
    Command,
    CoordinatorMessage,
    EntryKind,
    JournalEntry,
    Lease,
    Registered,
    ReportAck,
    ReportAcks,
    ReportOutcome,
    ReportResponse,
    Run,
    WorkerMessage,
    WorkerReport,
    WorkerServiceBase,
    WorkItem,
)

WAIT = 10.0  # generous upper bound on any single wait; a passing test never reaches it

AckPolicy = Callable[[WorkerReport], ReportAck]


def kind(command: Command) -> str:
    return betterproto2.which_one_of(command, "command")[0]


def continue_or_finish(report: WorkerReport) -> ReportAck:
    """CONTINUE for steps and emits, FINISHED for a run's end (completed, failed or blocked): a
    coordinator with no surprises."""
    kinds = {kind(c) for c in report.report.commands}
    outcome = (
        ReportOutcome.FINISHED
        if kinds & {"run_completed", "run_failed", "run_blocked"}
        else ReportOutcome.CONTINUE
    )
    return ReportAck(request_id=report.request_id, response=ReportResponse(outcome=outcome))


class FakeSession:
    """One worker stream as the fake coordinator sees it."""

    def __init__(self, coordinator: FakeCoordinator) -> None:
        self.coordinator = coordinator
        self.received: list[WorkerMessage] = []
        self.outbox: asyncio.Queue[CoordinatorMessage | None] = asyncio.Queue()
        self.ended = asyncio.Event()  # the worker half-closed (or the stream broke)

    @property
    def register(self) -> Any:
        return next(m.register for m in self.received if m.register is not None)

    @property
    def reports(self) -> list[WorkerReport]:
        """Every report received, in order, those of a ``WorkerReports`` batch one by one."""
        return [
            report
            for m in self.received
            for report in (
                [m.report] if m.report is not None else m.reports.reports if m.reports else []
            )
        ]

    @property
    def drained(self) -> bool:
        return any(m.drain is not None for m in self.received)

    @property
    def heartbeats(self) -> int:
        return sum(1 for m in self.received if m.heartbeat is not None)

    def commands(self, run_id: str) -> list[tuple[str, Any]]:
        """Every command reported for ``run_id``, in order, as (kind, value)."""
        return [
            betterproto2.which_one_of(c, "command")
            for r in self.reports
            if r.report.run_id == run_id
            for c in r.report.commands
        ]

    def finished(self, run_id: str) -> bool:
        return any(
            k in ("run_completed", "run_failed", "run_blocked") for k, _ in self.commands(run_id)
        )

    def dispatch(self, item: WorkItem) -> None:
        self.outbox.put_nowait(CoordinatorMessage(dispatch=item))

    def cancel(self, run_id: str, lease_id: str) -> None:
        """Tell the worker that the run it holds under ``lease_id`` is being cancelled."""
        notice = CancelNotice(run_id=run_id, lease_id=lease_id)
        self.outbox.put_nowait(CoordinatorMessage(cancel=notice))

    def close(self) -> None:
        """End the stream from the coordinator's side."""
        self.outbox.put_nowait(None)

    async def pump(self, messages: AsyncIterator[WorkerMessage]) -> None:
        try:
            async for message in messages:
                self.received.append(message)
                which, value = betterproto2.which_one_of(message, "message")
                if which == "register":
                    self.outbox.put_nowait(
                        CoordinatorMessage(
                            registered=Registered(
                                session_id=f"s-{len(self.coordinator.sessions)}",
                                heartbeat_interval_ms=self.coordinator.heartbeat_ms,
                                batches=self.coordinator.batches,
                            )
                        )
                    )
                elif which == "report":
                    ack = self.coordinator.ack_policy(value)
                    if ack is not None:
                        self.outbox.put_nowait(CoordinatorMessage(report_ack=ack))
                elif which == "reports":  # acked together, as the coordinator does in one turn
                    acks = [a for r in value.reports if (a := self.coordinator.ack_policy(r))]
                    if acks:
                        self.outbox.put_nowait(CoordinatorMessage(report_acks=ReportAcks(acks)))
                await self.coordinator.notify()
        finally:
            self.ended.set()
            if self.coordinator.close_when_worker_ends:
                self.outbox.put_nowait(None)
            await self.coordinator.notify()


class _Server(Server):
    """grpclib's server, remembering its connections so a test can drop them (``close()`` only
    cancels the handlers and leaves accepted connections open)."""

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self.protocols: list[Any] = []

    def _protocol_factory(self) -> Any:
        protocol = super()._protocol_factory()
        self.protocols.append(protocol)
        return protocol


class FakeCoordinator(WorkerServiceBase):
    """The scripted coordinator. ``sessions`` lists every stream, oldest first."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []
        self.ack_policy: AckPolicy = continue_or_finish
        self.heartbeat_ms = 50
        self.batches = True  # Registered says the coordinator reads WorkerReports
        self.close_when_worker_ends = True  # end our side of a stream once the worker ended its
        self.port = 0
        self.server: _Server | None = None
        self._changed = asyncio.Condition()

    async def connect(
        self, messages: AsyncIterator[WorkerMessage]
    ) -> AsyncIterator[CoordinatorMessage]:
        session = FakeSession(self)
        self.sessions.append(session)
        await self.notify()
        pump = asyncio.create_task(session.pump(messages))
        try:
            while (message := await session.outbox.get()) is not None:
                yield message
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        """Wait until ``predicate()`` holds; it is re-checked on every message received."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    async def registered(self, count: int = 1) -> FakeSession:
        """The ``count``-th session, once its worker registered."""
        await self.until(
            lambda: (
                len(self.sessions) >= count
                and any(m.register is not None for m in self.sessions[count - 1].received)
            )
        )
        return self.sessions[count - 1]

    async def start(self) -> None:
        self.server = _Server([self])
        await self.server.start("127.0.0.1", self.port)
        self.port = self.server._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving and drop every connection, as a coordinator that dies would."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for protocol in self.server.protocols:
            if hasattr(protocol, "connection"):
                protocol.connection.close()
        self.server = None


@pytest.fixture
async def coordinator() -> AsyncIterator[FakeCoordinator]:
    fake = FakeCoordinator()
    await fake.start()
    try:
        yield fake
    finally:
        if fake.server is not None:
            await fake.stop()


@pytest.fixture
async def serve(
    coordinator: FakeCoordinator,
) -> AsyncIterator[Callable[[trine.Worker], asyncio.Task[None]]]:
    """Start ``worker.serve()`` in the background; stopped (drained) at teardown."""
    started: list[tuple[trine.Worker, asyncio.Task[None]]] = []

    def start(worker: trine.Worker) -> asyncio.Task[None]:
        task = asyncio.create_task(worker.serve(handle_signals=False))
        started.append((worker, task))
        return task

    yield start
    for worker, task in started:
        worker.shutdown()
        try:
            await asyncio.wait_for(task, WAIT)
        except TimeoutError:
            task.cancel()
            raise


@pytest.fixture
def make_worker(coordinator: FakeCoordinator) -> Callable[..., trine.Worker]:
    def make(**kwargs: Any) -> trine.Worker:
        kwargs.setdefault("worker_id", "w-test")
        kwargs.setdefault("address", f"127.0.0.1:{coordinator.port}")
        return trine.Worker(**kwargs)

    return make


def build_item(
    run_id: str,
    function: str,
    input: Any = None,
    *,
    journal: list[JournalEntry] | None = None,
    step_attempts: dict[int, int] | None = None,
    attempt: int = 1,
    cancel_requested: bool = False,
) -> WorkItem:
    return WorkItem(
        run=Run(
            id=run_id,
            function=function,
            input=json.dumps(input).encode(),
            attempt=attempt - 1,
            cancel_requested=cancel_requested,
        ),
        lease=Lease(id=f"lease-{run_id}-{attempt}", attempt=attempt),
        journal=journal or [],
        step_attempts=step_attempts or {},
    )


@pytest.fixture
def default_ack() -> AckPolicy:
    """The fake's default ack policy, for a test policy to fall back on."""
    return continue_or_finish


@pytest.fixture
def item() -> Callable[..., WorkItem]:
    """``item(run_id, function, input, journal=, step_attempts=, attempt=)``: a WorkItem."""
    return build_item


@pytest.fixture
def entry() -> Callable[..., JournalEntry]:
    """A journal entry: ``entry(index, name, output)`` or ``entry(index, name, error=...)``."""

    def make(index: int, name: str, output: Any = None, **kwargs: Any) -> JournalEntry:
        data = b"" if "error" in kwargs else json.dumps(output).encode()
        return JournalEntry(index=index, name=name, output=data, attempt=1, **kwargs)

    return make


@pytest.fixture
def wait_entry() -> Callable[..., JournalEntry]:
    """A resolved wait: ``wait_entry(index, kind, name, output)``, or with ``error=``."""

    def make(index: int, kind: EntryKind, name: str, output: Any = None, **kw: Any) -> JournalEntry:
        data = b"" if "error" in kw else json.dumps(output).encode()
        return JournalEntry(index=index, kind=kind, name=name, output=data, **kw)

    return make


@pytest.fixture
def waits_suspend(default_ack: AckPolicy) -> AckPolicy:
    """An ack policy: a report with a wait in it suspends the run; the rest get the default."""
    waits = {"sleep", "wait_signal", "start_child"}

    def policy(report: WorkerReport) -> ReportAck:
        if not waits.isdisjoint(kind(c) for c in report.report.commands):
            suspended = ReportResponse(outcome=ReportOutcome.SUSPENDED)
            return ReportAck(request_id=report.request_id, response=suspended)
        return default_ack(report)

    return policy


@pytest.fixture
def counting() -> Callable[[dict[str, int], str], Callable[[int], dict[str, Any]]]:
    """``counting(counts, name)``: a step body that counts its executions in ``counts``."""

    def make(counts: dict[str, int], name: str) -> Callable[[int], dict[str, Any]]:
        def body(value: int) -> dict[str, Any]:
            counts[name] = counts.get(name, 0) + 1
            return {"step": name, "value": value}

        return body

    return make


class LogWatch(logging.Handler):
    """Collects ``trine`` log records and sets ``seen`` once ``count`` of them match."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._waiters: list[tuple[Callable[[logging.LogRecord], bool], int, asyncio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for match, count, event in self._waiters:
            if sum(1 for r in self.records if match(r)) >= count:
                event.set()

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    async def wait(
        self, match: Callable[[logging.LogRecord], bool], count: int = 1, within: float = WAIT
    ) -> None:
        event = asyncio.Event()
        self._waiters.append((match, count, event))
        if sum(1 for r in self.records if match(r)) >= count:  # already seen
            event.set()
        await asyncio.wait_for(event.wait(), within)


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("trine")
    previous = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(previous)


@pytest.fixture(autouse=True)
def no_asyncio_errors() -> Iterator[None]:
    """Fail a test whose tasks or futures died unobserved ("exception was never retrieved")."""
    watch = LogWatch()
    logger = logging.getLogger("asyncio")
    logger.addHandler(watch)
    try:
        yield
    finally:
        logger.removeHandler(watch)
    assert watch.messages(logging.ERROR) == []
