"""A real engine on a real RocksDB in ``tmp_path``, on a manual clock, and a harness that speaks
its protocols."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from trine_engine import (
    Engine,
    EngineBackend,
    EngineConfig,
    EngineDispatcher,
    ManualClock,
    RunSnapshot,
)
from trine_engine.storage import partition_log
from trine_proto.trine.v1 import (
    Command,
    Emit,
    ErrorInfo,
    Event,
    FunctionSpec,
    JournalEntry,
    RegisterFunctionsRequest,
    ReportRequest,
    ReportResponse,
    RetryPolicy,
    Run,
    RunCompleted,
    RunFailed,
    Sleep,
    StartChild,
    StartRunRequest,
    StepCompleted,
    StepFailed,
    StepStarted,
    SubscribeRequest,
    TakeWorkRequest,
    WaitSignal,
    WorkItem,
)

FUNCTION = "greet"


class Harness:
    """Drives one engine; ``reopen`` closes it and opens the same data dir again, on the same
    clock. Time moves only when a test moves ``clock``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.clock = ManualClock()
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    @property
    def backend(self) -> EngineBackend:
        return self.engine.backend

    @property
    def dispatcher(self) -> EngineDispatcher:
        return self.engine.dispatcher

    def inspect(self, run_id: str) -> RunSnapshot:
        """The run inside the engine; it must be in memory."""
        snapshot = self.engine.inspect(run_id)
        assert snapshot is not None, f"run {run_id} is not in memory"
        return snapshot

    async def open(self, **changes: Any) -> Engine:
        if changes:
            self.config = dataclasses.replace(self.config, **changes)
        self._engine = await Engine.open(self.config, clock=self.clock)
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
            self._engine = None

    async def reopen(self, **changes: Any) -> Engine:
        await self.close()
        return await self.open(**changes)

    @staticmethod
    async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Let the engine run (its timer loop, its after-commit callbacks) until ``predicate``."""
        for _ in range(int(timeout_s * 1000)):
            if predicate():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"still false after {timeout_s}s: {predicate}")

    # -- calls -------------------------------------------------------------------------------------

    async def register(self, *names: str, retry: RetryPolicy | None = None) -> None:
        specs = [FunctionSpec(name=name, retry=retry) for name in names or (FUNCTION,)]
        await self.dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="w1", functions=specs)
        )

    async def start(self, function: str = FUNCTION, data: bytes = b'{"who":"ada"}') -> Run:
        response = await self.backend.start_run(StartRunRequest(function=function, input=data))
        return response.run

    async def take(
        self,
        functions: tuple[str, ...] = (FUNCTION,),
        worker: str = "w1",
        max_items: int = 1,
        wait_ms: int = 0,
        ttl_ms: int = 0,
    ) -> list[WorkItem]:
        response = await self.dispatcher.take_work(
            TakeWorkRequest(
                worker_id=worker,
                functions=list(functions),
                max_items=max_items,
                wait_ms=wait_ms,
                lease_ttl_ms=ttl_ms,
            )
        )
        return list(response.items)

    async def take_one(self, **kwargs: Any) -> WorkItem:
        items = await self.take(**kwargs)
        assert len(items) == 1, items
        return items[0]

    async def report(self, item: WorkItem, *commands: Command) -> ReportResponse:
        return await self.dispatcher.report(
            ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=list(commands))
        )

    async def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Every event after ``after_seq`` up to the final one (the run must finish)."""
        request = SubscribeRequest(run_id=run_id, after_seq=after_seq)
        return [event async for event in self.backend.subscribe(request)]

    # -- commands ----------------------------------------------------------------------------------

    @staticmethod
    def started(index: int, name: str = "step", attempt: int = 1) -> Command:
        return Command(step_started=StepStarted(index=index, name=name, attempt=attempt))

    @staticmethod
    def completed(
        index: int, name: str = "step", output: bytes = b"1", attempt: int = 1
    ) -> Command:
        entry = JournalEntry(index=index, name=name, output=output, attempt=attempt)
        return Command(step_completed=StepCompleted(entry=entry))

    @staticmethod
    def failed(
        index: int,
        name: str = "step",
        attempt: int = 1,
        retryable: bool = True,
        retry: RetryPolicy | None = None,
    ) -> Command:
        error = ErrorInfo(type="ValueError", message="boom", retryable=retryable)
        return Command(
            step_failed=StepFailed(
                index=index, name=name, attempt=attempt, error=error, retry=retry
            )
        )

    @staticmethod
    def sleep(index: int, duration_ms: int = 0, until_ms: int = 0) -> Command:
        return Command(sleep=Sleep(index=index, duration_ms=duration_ms, until_ms=until_ms))

    @staticmethod
    def wait_signal(index: int, name: str, timeout_ms: int = 0) -> Command:
        return Command(wait_signal=WaitSignal(index=index, name=name, timeout_ms=timeout_ms))

    @staticmethod
    def child(index: int, function: str = FUNCTION, data: bytes = b"{}") -> Command:
        return Command(start_child=StartChild(index=index, function=function, input=data))

    @staticmethod
    def emit(name: str, data: bytes, index: int | None = None) -> Command:
        """A custom event; journaled at ``index`` when given (as the SDK sends it)."""
        return Command(emit=Emit(name=name, data=data, index=index))

    @staticmethod
    def finish(result: bytes = b'"done"') -> Command:
        return Command(run_completed=RunCompleted(result=result))

    @staticmethod
    def fail(message: str = "it broke") -> Command:
        return Command(run_failed=RunFailed(error=ErrorInfo(type="RuntimeError", message=message)))


@pytest.fixture(autouse=True)
def commits_through_the_sync_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch is written at once and made durable on a later turn of the loop, by the sync
    thread: tests step the group commit turn by turn (``await asyncio.sleep(0)``: appended, not
    durable yet). A lone record on an idle log would be synced inline instead
    (``INLINE_AFTER_IDLE_S``), which depends on how long the machine took since the last commit;
    the test of that path sets it back."""
    monkeypatch.setattr(partition_log, "INLINE_AFTER_IDLE_S", float("inf"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "data"


@pytest.fixture
def config(data_dir: Path) -> EngineConfig:
    return EngineConfig(data_dir=data_dir, max_payload_bytes=4096, lease_ttl_ms=30_000)


@pytest.fixture
async def h(config: EngineConfig) -> AsyncIterator[Harness]:
    harness = Harness(config)
    await harness.open()
    yield harness
    await harness.close()
