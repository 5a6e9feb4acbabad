"""What the tests of builds, blocked runs and retries share: registering and taking as a worker of
a build, and the commands of docs/versioning.md."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import FUNCTION, Harness
from trine_proto.trine.v1 import (
    Command,
    ErrorInfo,
    FunctionSpec,
    GetRunRequest,
    Patched,
    RegisterFunctionsRequest,
    Run,
    RunBlocked,
    TakeWorkRequest,
    VersioningMode,
    WorkItem,
)

BUILD_A = "build-a"
BUILD_B = "build-b"


async def register_build(
    h: Harness,
    build: str,
    *names: str,
    versioning: VersioningMode = VersioningMode.UNSPECIFIED,
    timeout_ms: int = 0,
) -> None:
    specs = [
        FunctionSpec(name=name, versioning=versioning, timeout_ms=timeout_ms)
        for name in names or (FUNCTION,)
    ]
    await h.dispatcher.register_functions(
        RegisterFunctionsRequest(worker_id=f"worker-{build}", functions=specs, build_id=build)
    )


async def take(
    h: Harness, build: str, *functions: str, max_items: int = 10, wait_ms: int = 0
) -> list[WorkItem]:
    response = await h.dispatcher.take_work(
        TakeWorkRequest(
            worker_id=f"worker-{build}",
            functions=list(functions or (FUNCTION,)),
            max_items=max_items,
            wait_ms=wait_ms,
            build_id=build,
        )
    )
    return list(response.items)


async def take_one(h: Harness, build: str, *functions: str) -> WorkItem:
    items = await take(h, build, *functions)
    assert len(items) == 1, items
    return items[0]


async def run_of(h: Harness, run_id: str) -> Run:
    return await h.backend.get_run(GetRunRequest(run_id=run_id))


def blocked(message: str = "workflow code raised") -> Command:
    error = ErrorInfo(type="NonDeterminismError", message=message)
    return Command(run_blocked=RunBlocked(error=error))


def patched(index: int, change_id: str) -> Command:
    return Command(patched=Patched(index=index, change_id=change_id))


async def event_data(h: Harness, run_id: str, event_type: str) -> list[Any]:
    """The JSON data of the run's durable events of ``event_type``, in order."""
    snapshot = h.inspect(run_id)
    events = snapshot.events[: snapshot.durable_seq]
    return [json.loads(e.data) for e in events if e.type == event_type]
