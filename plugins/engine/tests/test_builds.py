"""Builds (docs/versioning.md): a registration's build on the functions it sets, a run's build
(its first reporter's: taking writes nothing), pinned runs given only to their build (and
waiting, visibly, for it), moves, and the list of builds; what is durable survives a restart and
a replay of the log."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import betterproto2
import pytest
from tests.versioning_kit import (
    BUILD_A,
    BUILD_B,
    event_data,
    register_build,
    run_of,
    take,
    take_one,
)

from tests.conftest import FUNCTION, Harness
from trine_core import RunFinished, RunNotFound
from trine_core.errors import UnknownBuild
from trine_engine import Engine
from trine_engine.builds import CONNECTED_MS
from trine_proto.trine.v1 import (
    CancelRunRequest,
    FunctionSpec,
    ListBuildsRequest,
    ListFunctionsRequest,
    MoveRunRequest,
    RegisterFunctionsRequest,
    ReleaseLeasesRequest,
    RunStatus,
    TakeWorkRequest,
    VersioningMode,
    WorkflowErrorMode,
    WorkItem,
)

OTHER = "other"


async def release(h: Harness, item: WorkItem) -> None:
    await h.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))


async def give_build(h: Harness, build: str, index: int = 0) -> None:
    """A worker of ``build`` takes the run first in line, reports a step (a run with no build
    yet gets ``build``) and gives the run back."""
    [item] = await take(h, build, max_items=1)
    await h.report(item, h.completed(index))
    await release(h, item)


def records(h: Harness) -> int:
    return h.engine.stats().next_offset


async def test_a_registration_records_its_build_and_settings(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    spec = FunctionSpec(name=OTHER, on_workflow_error=WorkflowErrorMode.FAIL)
    await h.dispatcher.register_functions(
        RegisterFunctionsRequest(worker_id="w", build_id=BUILD_B, functions=[spec])
    )
    functions = (await h.backend.list_functions(ListFunctionsRequest())).functions
    assert [(f.name, f.build_id, f.versioning, f.on_workflow_error) for f in functions] == [
        (FUNCTION, BUILD_A, VersioningMode.PINNED, WorkflowErrorMode.UNSPECIFIED),
        (OTHER, BUILD_B, VersioningMode.UNSPECIFIED, WorkflowErrorMode.FAIL),
    ]
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)  # same settings, new build
    functions = (await h.backend.list_functions(ListFunctionsRequest())).functions
    assert functions[0].build_id == BUILD_B


async def test_a_take_writes_nothing_and_a_run_given_back_unreported_has_no_build(
    h: Harness,
) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    run = await h.start()
    before = records(h)
    item = await take_one(h, BUILD_A)
    assert records(h) == before
    assert item.run.build_id == BUILD_A  # shown as its worker's while it runs
    assert (await run_of(h, run.id)).build_id == BUILD_A
    await release(h, item)
    assert (await run_of(h, run.id)).build_id == ""
    assert h.inspect(run.id).run.build_id == ""
    assert records(h) == before
    again = await take_one(h, BUILD_B)  # pinned, yet any build may take it: it has no build
    assert again.run.id == run.id
    await h.report(again, h.completed(0))
    assert (await run_of(h, run.id)).build_id == BUILD_B


async def test_a_run_keeps_its_first_reporters_build_across_a_restart(h: Harness) -> None:
    await register_build(h, BUILD_A)
    await register_build(h, BUILD_B)
    run = await h.start()
    assert (await run_of(h, run.id)).build_id == ""
    await give_build(h, BUILD_A)
    assert (await run_of(h, run.id)).build_id == BUILD_A
    again = await take_one(h, BUILD_B)  # auto-upgrade: any build continues it
    assert again.run.id == run.id
    await h.report(again, h.completed(1))
    assert (await run_of(h, run.id)).build_id == BUILD_A
    assert await event_data(h, run.id, "run.moved") == []  # a first reporter is no move
    reported = [r.run_commands.build_id for _, r in h.engine.read_log(0) if r.run_commands]
    assert reported == [BUILD_A, BUILD_B]  # each report names its worker's build

    await h.reopen()
    assert (await run_of(h, run.id)).build_id == BUILD_A


async def test_a_replayed_log_gives_each_run_the_same_build(h: Harness, tmp_path: Path) -> None:
    """Applying the log's records again (``RunCommands`` read back, not planned live) gives each
    run its first reporter's build, whatever builds reported after it."""
    await register_build(h, BUILD_A)
    await register_build(h, BUILD_B)
    first, second, never = await h.start(), await h.start(), await h.start()
    [by_a, unreported] = await take(h, BUILD_A, max_items=2)
    await h.report(by_a, h.completed(0))
    await release(h, unreported)
    await release(h, by_a)
    taken = {item.run.id: item for item in await take(h, BUILD_B)}
    assert sorted(taken) == sorted([first.id, second.id, never.id])
    await h.report(taken[first.id], h.completed(1))
    await h.report(taken[second.id], h.completed(0))  # never: taken twice, never reported
    recorded = list(h.engine.read_log(0))

    copy = dataclasses.replace(h.config, data_dir=tmp_path / "replayed")
    replayed = await Engine.open(copy, clock=h.clock)
    try:
        for _, record in recorded:
            assert betterproto2.which_one_of(record, "record")[0] != "run_moved"
            await replayed._machine.append(record).durable()
        builds = [replayed.inspect(r.id).run.build_id for r in (first, second, never)]
    finally:
        await replayed.close()
    assert builds == [BUILD_A, BUILD_B, ""]
    assert [h.inspect(r.id).run.build_id for r in (first, second, never)] == builds


async def test_a_pinned_run_goes_only_to_its_build_and_does_not_hold_up_others(
    h: Harness,
) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    pinned = await h.start()
    await give_build(h, BUILD_A)  # pinned to A, first in line again
    fresh = await h.start()  # no build yet: any taker may take it
    items = await take(h, BUILD_B)
    assert [i.run.id for i in items] == [fresh.id]
    assert await take(h, BUILD_B) == []
    assert [i.run.id for i in await take(h, BUILD_A)] == [pinned.id]


async def test_a_waiting_take_of_the_build_gets_its_pinned_run(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    await h.report(item, h.completed(0))
    waiter_b = asyncio.create_task(take(h, BUILD_B, wait_ms=200))
    waiter_a = asyncio.create_task(take(h, BUILD_A, wait_ms=5_000))
    await h.until(lambda: h.engine.stats().take_work_waiters == 2)
    await release(h, item)
    assert [i.run.id for i in await waiter_a] == [run.id]
    assert await waiter_b == []


async def test_a_pinned_run_shows_the_build_it_waits_for(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    await give_build(h, BUILD_A)
    assert (await run_of(h, run.id)).waiting_for_build == ""  # A asked for work just now
    h.clock.advance(CONNECTED_MS + 1)
    shown = await run_of(h, run.id)
    assert (shown.status, shown.waiting_for_build) == (RunStatus.PENDING, BUILD_A)
    waiter = asyncio.create_task(take(h, BUILD_B, wait_ms=5_000))
    await h.until(lambda: h.engine.stats().take_work_waiters == 1)
    assert (await run_of(h, run.id)).waiting_for_build == BUILD_A  # B is no help
    waiter_a = asyncio.create_task(take(h, BUILD_A, wait_ms=5_000))
    assert [i.run.id for i in await waiter_a] == [run.id]
    waiter.cancel()
    assert (await run_of(h, run.id)).waiting_for_build == ""  # running now
    stored = h.inspect(run.id).run
    assert stored.waiting_for_build == ""  # derived, never stored


async def test_a_move_goes_only_to_a_build_that_registered_the_function(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, OTHER)
    run = await h.start()
    await give_build(h, BUILD_A)
    for build in ("never", BUILD_B, ""):
        with pytest.raises(UnknownBuild, match=build or "''"):
            await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=build))
    assert (await run_of(h, run.id)).build_id == BUILD_A
    with pytest.raises(RunNotFound):
        await h.backend.move_run(MoveRunRequest(run_id="01NOSUCHRUN000000000000000"))

    await h.reopen()  # which builds registered which function survives
    with pytest.raises(UnknownBuild):
        await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_B))
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    await h.reopen()
    moved = await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_B))
    assert moved.build_id == BUILD_B
    assert await event_data(h, run.id, "run.moved") == [
        {"build_id": BUILD_B, "from_build_id": BUILD_A}
    ]
    assert await take(h, BUILD_A) == []
    item = await take_one(h, BUILD_B)
    assert item.run.id == run.id
    await h.report(item, h.finish())
    with pytest.raises(RunFinished):
        await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_A))

    await h.reopen()
    assert (await run_of(h, run.id)).build_id == BUILD_B


async def test_a_queued_run_moved_is_taken_by_its_new_build(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    run = await h.start()
    await give_build(h, BUILD_A)
    waiter = asyncio.create_task(take(h, BUILD_B, wait_ms=5_000))
    await h.until(lambda: h.engine.stats().take_work_waiters == 1)
    await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_B))
    assert [i.run.id for i in await waiter] == [run.id]


async def test_unpinning_a_function_frees_its_queued_runs(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    await give_build(h, BUILD_A)
    assert await take(h, BUILD_B) == []
    await register_build(h, BUILD_B, versioning=VersioningMode.AUTO_UPGRADE)
    assert [i.run.id for i in await take(h, BUILD_B)] == [run.id]


async def test_builds_are_listed(h: Harness) -> None:
    await register_build(h, BUILD_A, FUNCTION, OTHER)
    h.clock.advance(1_000)
    await register_build(h, BUILD_B, FUNCTION)
    open_a = await h.start()
    done = await h.start()
    await h.start()  # no build yet
    [first, item] = await take(h, BUILD_A, max_items=2)
    assert (first.run.id, item.run.id) == (open_a.id, done.id)
    await h.report(first, h.completed(0))  # its build from now on: A's
    await h.report(item, h.finish())
    now = h.clock.now_ms()
    builds = (await h.backend.list_builds(ListBuildsRequest())).builds
    shown = [(b.build_id, b.functions, b.open_runs, b.connected, b.last_seen_ms) for b in builds]
    assert shown == [
        (BUILD_A, [FUNCTION, OTHER], 1, True, now),
        (BUILD_B, [FUNCTION], 0, False, now),
    ]

    h.clock.advance(CONNECTED_MS + 1)
    await h.backend.cancel_run(CancelRunRequest(run_id=open_a.id))
    builds = (await h.backend.list_builds(ListBuildsRequest())).builds
    assert [b.connected for b in builds] == [False, False]

    await h.reopen()  # takers are in memory: nothing is seen until a worker asks again
    builds = (await h.backend.list_builds(ListBuildsRequest())).builds
    assert [(b.build_id, b.functions, b.last_seen_ms) for b in builds] == [
        (BUILD_A, [FUNCTION, OTHER], 0),
        (BUILD_B, [FUNCTION], 0),
    ]


async def test_a_pinned_run_whose_worker_died_before_reporting_goes_to_any_build(
    h: Harness,
) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    run = await h.start()
    taken = await h.dispatcher.take_work(
        TakeWorkRequest(worker_id="dies", functions=[FUNCTION], lease_ttl_ms=30, build_id=BUILD_A)
    )
    assert [i.run.id for i in taken.items] == [run.id]
    h.clock.advance(30)
    # Long-poll: the expiry puts the run back, with no build, and wakes this call of build B.
    again = await take(h, BUILD_B, wait_ms=5_000)
    assert [i.run.id for i in again] == [run.id]
    assert again[0].lease.attempt == 2
