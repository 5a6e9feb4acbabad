"""The engine's hot path alone, in-process: per run a start, a take and three reports (the
`order` workload's shape), at a given concurrency, on a fresh RocksDB. Prints the CPU time per
run and runs per second, so a change inside the engine can be told apart from one around it.

    .venv/bin/python bench/engine_path.py --runs 3000 --concurrency 50

Run it from two checkouts in turn (each with its own venv) to compare; it also runs against
checkouts from before the engine took an ``EngineConfig`` (it then passes ``Settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from trine_proto.trine.v1 import (
    Command,
    FunctionSpec,
    JournalEntry,
    RegisterFunctionsRequest,
    ReportRequest,
    RunCompleted,
    StartRunRequest,
    StepCompleted,
    StepStarted,
    TakeWorkRequest,
)

STEPS = ("validate", "charge", "ship")


async def open_engine(data_dir: Path) -> tuple[Any, Any, Any]:
    """(engine, backend, dispatcher) for this checkout's engine."""
    try:
        from trine_engine import Engine, EngineConfig
    except ImportError:  # an engine from before EngineConfig: one object served both contracts
        from trine_core import Settings
        from trine_engine import Engine

        old: Any = await Engine.open(Settings(data_dir=data_dir))
        return old, old, old
    engine = await Engine.open(EngineConfig(data_dir=data_dir))
    return engine, engine.backend, engine.dispatcher


async def one_run(backend: Any, dispatcher: Any) -> None:
    await backend.start_run(StartRunRequest(function="f", input=b'{"a":1}'))
    items: list[Any] = []
    while not items:
        take = TakeWorkRequest(worker_id="w", functions=["f"], max_items=1, wait_ms=1000)
        items = list((await dispatcher.take_work(take)).items)
    item = items[0]
    for index, name in enumerate(STEPS):
        entry = JournalEntry(index=index, name=name, output=b'{"ok":true}', attempt=1)
        commands = [
            Command(step_started=StepStarted(index=index, name=name, attempt=1)),
            Command(step_completed=StepCompleted(entry=entry)),
        ]
        if index == len(STEPS) - 1:
            commands.append(Command(run_completed=RunCompleted(result=b'{"done":true}')))
        report = ReportRequest(run_id=item.run.id, lease_id=item.lease.id, commands=commands)
        await dispatcher.report(report)


async def main(runs: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine, backend, dispatcher = await open_engine(Path(folder) / "data")
        spec = FunctionSpec(name="f")
        await dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="w", functions=[spec])
        )
        gate = asyncio.Semaphore(concurrency)

        async def guarded() -> None:
            async with gate:
                await one_run(backend, dispatcher)

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(guarded() for _ in range(runs)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await engine.close()
    per_run = 1e6 * cpu / runs
    print(f"| {runs} @ c{concurrency} | {per_run:.0f} µs CPU/run | {runs / wall:.0f} runs/s |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.concurrency))
