"""Builds (docs/versioning.md): a registration's build on the functions it sets, a run's first
taker's build, pinned runs given only to their build (and waiting, visibly, for it), moves, and
the list of builds; what is durable survives a restart."""

from __future__ import annotations

import asyncio

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
    VersioningMode,
    WorkflowErrorMode,
    WorkItem,
)

OTHER = "other"


async def release(h: Harness, item: WorkItem) -> None:
    await h.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))


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


async def test_a_run_keeps_its_first_takers_build_across_a_restart(h: Harness) -> None:
    await register_build(h, BUILD_A)
    await register_build(h, BUILD_B)
    run = await h.start()
    assert (await run_of(h, run.id)).build_id == ""
    item = await take_one(h, BUILD_A)
    assert item.run.build_id == BUILD_A
    assert (await run_of(h, run.id)).build_id == BUILD_A  # durable before the work was handed out
    await release(h, item)
    again = await take_one(h, BUILD_B)  # auto-upgrade: any build continues it
    assert again.run.id == run.id
    await h.report(again, h.completed(0))
    assert (await run_of(h, run.id)).build_id == BUILD_A
    assert await event_data(h, run.id, "run.moved") == []  # a first taker is no move

    await h.reopen()
    assert (await run_of(h, run.id)).build_id == BUILD_A


async def test_a_pinned_run_goes_only_to_its_build_and_does_not_hold_up_others(
    h: Harness,
) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    await register_build(h, BUILD_B, versioning=VersioningMode.PINNED)
    pinned = await h.start()
    await release(h, await take_one(h, BUILD_A))  # pinned to A, first in line again
    fresh = await h.start()  # no build yet: any taker may take it
    items = await take(h, BUILD_B)
    assert [i.run.id for i in items] == [fresh.id]
    assert await take(h, BUILD_B) == []
    assert [i.run.id for i in await take(h, BUILD_A)] == [pinned.id]


async def test_a_waiting_take_of_the_build_gets_its_pinned_run(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    item = await take_one(h, BUILD_A)
    waiter_b = asyncio.create_task(take(h, BUILD_B, wait_ms=200))
    waiter_a = asyncio.create_task(take(h, BUILD_A, wait_ms=5_000))
    await h.until(lambda: h.engine.stats().take_work_waiters == 2)
    await release(h, item)
    assert [i.run.id for i in await waiter_a] == [run.id]
    assert await waiter_b == []


async def test_a_pinned_run_shows_the_build_it_waits_for(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    await release(h, await take_one(h, BUILD_A))
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
    await release(h, await take_one(h, BUILD_A))
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
    await release(h, await take_one(h, BUILD_A))
    waiter = asyncio.create_task(take(h, BUILD_B, wait_ms=5_000))
    await h.until(lambda: h.engine.stats().take_work_waiters == 1)
    await h.backend.move_run(MoveRunRequest(run_id=run.id, build_id=BUILD_B))
    assert [i.run.id for i in await waiter] == [run.id]


async def test_unpinning_a_function_frees_its_queued_runs(h: Harness) -> None:
    await register_build(h, BUILD_A, versioning=VersioningMode.PINNED)
    run = await h.start()
    await release(h, await take_one(h, BUILD_A))
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


async def test_a_take_cancelled_while_the_build_is_written_gives_its_runs_back(
    h: Harness,
) -> None:
    await register_build(h, BUILD_A)
    run = await h.start()
    taking = asyncio.create_task(take(h, BUILD_A))
    await asyncio.sleep(0)  # leased, its first build appended, not yet durable
    assert h.inspect(run.id).lease is not None
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    assert h.inspect(run.id).lease is None
    assert [i.run.id for i in await take(h, BUILD_A)] == [run.id]
