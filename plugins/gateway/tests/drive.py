"""Driving runs of a :class:`~trine_core.testing.memory.MemoryEngine` the way a worker would: take
work through ``memory.dispatcher`` and report commands under the lease. The gateway reads what
that does through ``memory.backend``, as it reads the engine.

The command builders (``step_completed``, ``sleep``, ``wait_signal``, …) take the journal index
the command writes, as a workflow's replay would number it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from trine_core.testing.memory import MemoryEngine
from trine_proto.trine.v1 import (
    CancelObserved,
    Command,
    Emit,
    ErrorInfo,
    FunctionSpec,
    GetJournalRequest,
    JournalEntry,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
    ReportOutcome,
    ReportRequest,
    ReportResponse,
    RetryPolicy,
    RunBlocked,
    RunCompleted,
    RunFailed,
    Sleep,
    StartChild,
    StepCompleted,
    StepFailed,
    StepStarted,
    TakeWorkRequest,
    WaitSignal,
    WorkItem,
)
from trine_proto.vocabulary import ErrorType

T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
WORKER = "w-1"
FUNCTIONS = (
    FunctionSpec(
        name="order",
        retry=RetryPolicy(
            max_attempts=5, initial_interval_ms=100, max_interval_ms=10_000, backoff_coefficient=1.1
        ),
    ),
    FunctionSpec(name="echo"),
)
"""What the tests' worker has registered: ``echo`` runs end with their input (:func:`echoing`)."""


@dataclass
class Clock:
    """The engine's clock in milliseconds: stands still at ``now_ms`` until a test moves it."""

    now_ms: int = T0

    def __call__(self) -> int:
        return self.now_ms


def requests(memory: MemoryEngine, method: str) -> list[Any]:
    """The requests of every ``method`` call the engine received so far, in order."""
    return [request for name, request in memory.calls if name == method]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def step_started(index: int, name: str, attempt: int = 1) -> Command:
    return Command(step_started=StepStarted(index=index, name=name, attempt=attempt))


def step_completed(index: int, name: str, output: Any, **fields: Any) -> Command:
    entry = JournalEntry(index=index, name=name, output=_json(output), **{"attempt": 1, **fields})
    return Command(step_completed=StepCompleted(entry=entry))


def step_failed(index: int, name: str, error: ErrorInfo, **fields: Any) -> Command:
    failed = StepFailed(index=index, name=name, error=error, **{"attempt": 1, **fields})
    return Command(step_failed=failed)


def emit(name: str, data: Any, index: int | None = None) -> Command:
    """A custom event; journaled at ``index`` when given (as the SDK sends it)."""
    return Command(emit=Emit(name=name, data=_json(data), index=index))


def sleep(index: int, until_ms: int) -> Command:
    return Command(sleep=Sleep(index=index, until_ms=until_ms))


def wait_signal(index: int, name: str, timeout_ms: int = 0) -> Command:
    return Command(wait_signal=WaitSignal(index=index, name=name, timeout_ms=timeout_ms))


def start_child(index: int, function: str, data: Any = None) -> Command:
    return Command(start_child=StartChild(index=index, function=function, input=_json(data)))


def cancel_observed(index: int) -> Command:
    return Command(cancel_observed=CancelObserved(index=index, name="cancel"))


def run_completed(result: Any) -> Command:
    return Command(run_completed=RunCompleted(result=_json(result)))


def run_failed(error: ErrorInfo) -> Command:
    return Command(run_failed=RunFailed(error=error))


def run_blocked(error: ErrorInfo) -> Command:
    return Command(run_blocked=RunBlocked(error=error))


class Driver:
    """A worker, scripted by the test: it leases the run it is told to drive (runs taken with it
    go back), keeps the lease while the run goes on, and lets it go once the run suspends, ends or
    waits for a retry."""

    def __init__(self, memory: MemoryEngine) -> None:
        self.memory = memory
        self.build_id = ""
        """The build it registers and takes work as (none by default)."""
        self._held: dict[str, WorkItem] = {}

    async def register(self, *specs: FunctionSpec) -> None:
        request = RegisterFunctionsRequest(
            worker_id=WORKER, functions=list(specs), build_id=self.build_id
        )
        await self.memory.dispatcher.register_functions(request)

    async def lease(self, run_id: str) -> WorkItem:
        """The run's work item under a lease this worker holds (taken now if need be)."""
        if run_id in self._held:
            return self._held[run_id]
        functions = sorted(self.memory.functions)
        take = TakeWorkRequest(
            worker_id=WORKER, functions=functions, max_items=100, wait_ms=1, build_id=self.build_id
        )
        items = (await self.memory.dispatcher.take_work(take)).items
        mine = [item for item in items if item.run and item.run.id == run_id]
        others = [i.lease.id for i in items if i.lease and i.run and i.run.id != run_id]
        if others:  # back in line, in the order they were
            release = ReleaseLeasesRequest(lease_ids=others[::-1])
            await self.memory.dispatcher.release_leases(release)
        assert len(mine) == 1, f"run {run_id} is not ready to be taken"
        self._held[run_id] = mine[0]
        return mine[0]

    async def report(self, run_id: str, *commands: Command) -> ReportResponse:
        item = await self.lease(run_id)
        assert item.lease is not None
        request = ReportRequest(run_id=run_id, lease_id=item.lease.id, commands=list(commands))
        answer = await self.memory.dispatcher.report(request)
        if answer.outcome not in (ReportOutcome.CONTINUE, ReportOutcome.STEP_FAILED):
            del self._held[run_id]  # finished, suspended, or to be retried later
        return answer

    async def release(self, run_id: str) -> None:
        """Give the run back, as a worker that stops does: it is pending again."""
        item = self._held.pop(run_id)
        assert item.lease is not None
        await self.memory.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))

    async def suspend_on(self, run_id: str, *waits: Command) -> None:
        answer = await self.report(run_id, *waits)
        assert answer.outcome == ReportOutcome.SUSPENDED, answer

    async def complete(self, run_id: str, result: Any) -> None:
        await self.report(run_id, run_completed(result))

    async def fail(self, run_id: str, error: ErrorInfo) -> None:
        await self.report(run_id, run_failed(error))

    async def block(self, run_id: str, error: ErrorInfo) -> None:
        """A workflow error under ``on_workflow_error = block``: the run is held."""
        await self.report(run_id, run_blocked(error))

    async def cancelled(self, run_id: str) -> None:
        """The workflow is done cleaning up after the cancellation it was asked for."""
        error = ErrorInfo(type=ErrorType.CANCELLED, message="cancelled")
        await self.report(run_id, run_failed(error))

    async def child_of(self, run_id: str, index: int) -> str:
        """The id of the child run the run's journal entry ``index`` started."""
        journal = await self.memory.backend.get_journal(GetJournalRequest(run_id=run_id))
        return journal.entries[index].child_run_id


async def serve_echo(memory: MemoryEngine) -> None:
    """A worker of ``echo``: every run it takes ends with its input as its result."""
    take = TakeWorkRequest(worker_id="echo", functions=["echo"], max_items=10, wait_ms=60_000)
    while True:
        for item in (await memory.dispatcher.take_work(take)).items:
            assert item.run is not None
            assert item.lease is not None
            done = Command(run_completed=RunCompleted(result=item.run.input))
            request = ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=[done])
            await memory.dispatcher.report(request)


@contextlib.asynccontextmanager
async def echoing(memory: MemoryEngine) -> AsyncIterator[None]:
    """:func:`serve_echo` while the block runs."""
    worker = asyncio.create_task(serve_echo(memory))
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
