"""Builds at the coordinator (docs/versioning.md, "Builds"): a worker's build id goes to the engine
with its registration and with every take_work of its session, so a pinned run reaches only a
worker of its build; the registry shows it. ``MemoryEngine`` behind it pins runs as the engine
does."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FUNCTION, WorkerStream, ack, dispatched, running

from trine_coordinator.service import _note_steps
from trine_coordinator.session import WorkerSession
from trine_proto.trine.v1 import (
    Command,
    Emit,
    ErrorInfo,
    FunctionSpec,
    GetRunRequest,
    ListWorkersRequest,
    Patched,
    ReportOutcome,
    ReportRequest,
    RunBlocked,
    RunStatus,
    StepStarted,
    VersioningMode,
    WorkerReport,
)

PINNED = FunctionSpec(name=FUNCTION, versioning=VersioningMode.PINNED)
QUIET_S = 0.3
"""How long a worker that must get nothing is watched."""


async def nothing_dispatched(worker: WorkerStream) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.stream.recv_message(), QUIET_S)


async def test_a_workers_build_goes_with_its_registration_and_every_take_work() -> None:
    async with (
        running() as (role, harness),
        harness.worker("w-a", spec=PINNED, build_id="build-a") as worker,
    ):
        [registration] = await harness.memory.called("register_functions")
        assert (registration.worker_id, registration.build_id) == ("w-a", "build-a")
        [run_id] = await harness.start()
        assert await dispatched(worker) == run_id
        takes = await harness.memory.called("take_work")
        assert {(take.worker_id, take.build_id) for take in takes} == {("w-a", "build-a")}
        run = await harness.memory.backend.get_run(GetRunRequest(run_id=run_id))
        assert run.build_id == "build-a"
        assert role.registry is not None
        [listed] = (await role.registry.list_workers(ListWorkersRequest())).workers
        assert listed.build_id == "build-a"
        assert [w["build_id"] for w in role.workers()] == ["build-a"]
        await worker.stream.end()


async def test_a_worker_without_a_build_id_is_of_the_unknown_build() -> None:
    """An SDK from before builds sends none: its worker is of build ""."""
    async with running() as (role, harness), harness.worker("w-old") as worker:
        [registration] = await harness.memory.called("register_functions")
        [take, *_] = await harness.memory.called("take_work")
        assert (registration.build_id, take.build_id) == ("", "")
        assert role.registry is not None
        [listed] = (await role.registry.list_workers(ListWorkersRequest())).workers
        assert listed.build_id == ""
        await worker.stream.end()


async def test_a_pinned_run_reaches_only_a_worker_of_its_build() -> None:
    """Each session takes work with its own build id: the run of build A (its first report was
    A's) that A's worker gave back waits while only B's worker asks, and goes to the next worker
    of A."""
    async with running() as (_, harness):
        async with harness.worker("w-a", spec=PINNED, build_id="build-a") as first_a:
            [run_id] = await harness.start()
            assert await dispatched(first_a) == run_id
            marker = Command(patched=Patched(index=0, change_id="c"))
            lease_id = first_a.leases[run_id]
            report = ReportRequest(run_id=run_id, lease_id=lease_id, commands=[marker])
            await first_a.send(report=WorkerReport(request_id=1, report=report))
            assert (await ack(first_a)).response is not None
            async with harness.worker("w-b", spec=PINNED, build_id="build-b") as b:
                await first_a.stream.end()  # its lease is given back: the run is ready again
                await harness.released(1)
                await nothing_dispatched(b)
                async with harness.worker("w-a2", spec=PINNED, build_id="build-a") as second_a:
                    assert await dispatched(second_a) == run_id
                    await second_a.report(run_id)
                    assert (await ack(second_a)).response is not None
                    await second_a.stream.end()
                await b.stream.end()
        run = await harness.memory.backend.get_run(GetRunRequest(run_id=run_id))
        assert (run.status, run.build_id) == (RunStatus.COMPLETED, "build-a")


async def test_a_blocked_run_frees_its_workers_slot() -> None:
    async with running() as (_, harness), harness.worker("w1", slots=1, build_id="b1") as worker:
        first, second = await harness.start(2)
        assert await dispatched(worker) == first
        error = ErrorInfo(type="NonDeterminismError", message="the code changed")
        blocked = ReportRequest(
            run_id=first,
            lease_id=worker.leases[first],
            commands=[Command(run_blocked=RunBlocked(error=error))],
        )
        await worker.send(report=WorkerReport(request_id=1, report=blocked))
        acked = await ack(worker)
        assert acked.response is not None
        assert acked.response.outcome == ReportOutcome.FINISHED
        assert await dispatched(worker) == second  # the slot was freed
        run = await harness.memory.backend.get_run(GetRunRequest(run_id=first))
        assert (run.status, run.blocked_build_id) == (RunStatus.BLOCKED, "b1")
        await worker.stream.end()


def test_a_patch_marker_does_not_end_an_attempt_and_a_blocked_run_does() -> None:
    session = WorkerSession("w1", "s1", [FUNCTION], 1, in_flight={"r1": "l1"})

    def ends(*commands: Command) -> bool:
        return _note_steps(
            session, ReportRequest(run_id="r1", lease_id="l1", commands=list(commands))
        )

    step = Command(step_started=StepStarted(index=1, name="s", attempt=1))
    assert not ends(Command(patched=Patched(index=0, change_id="c")), step)
    assert not ends(Command(emit=Emit(name="e", index=2)))
    assert ends(Command(run_blocked=RunBlocked(error=ErrorInfo(type="TypeError"))))
