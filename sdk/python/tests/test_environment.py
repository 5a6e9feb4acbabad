"""``trine.testing.WorkflowEnvironment``: the real runtime in the test's loop, time that skips.

The workflow under test is ``examples/approval_worker.py``'s ``approval`` (a step, a durable
sleep, a signal wait with an optional timeout), loaded afresh for each test so each has its own
``trine.Worker``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import trine
from trine.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[3]
APPROVAL = ROOT / "examples" / "approval_worker.py"
TESTING_DOC = ROOT / "docs" / "testing.md"
DAY = timedelta(days=1)
WAIT = 10.0  # generous bound on any single wait; a passing test never reaches it


def approval_module(name: str = "approval_under_test") -> ModuleType:
    """``examples/approval_worker.py`` imported afresh: a new module, a new ``worker``."""
    spec = importlib.util.spec_from_file_location(name, APPROVAL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def approval_worker(worker_id: str = "approval-worker") -> trine.Worker:
    worker: trine.Worker = approval_module().worker
    worker.worker_id = worker_id
    return worker


async def until(predicate: Callable[[], Any], what: str) -> None:
    """Poll ``predicate`` (an async check of the runtime's state over HTTP) until it holds."""
    deadline = time.monotonic() + WAIT
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def status_is(env: WorkflowEnvironment, run_id: str, status: str) -> None:
    async def check() -> bool:
        return (await env.client.get(run_id))["status"] == status

    await until(check, f"run {run_id} to be {status}")


async def test_a_day_of_sleep_and_a_signal_complete_in_well_under_two_seconds() -> None:
    """The issue's bar: approval with a one-day sleep and an approve signal, in under 2 s."""
    began = time.perf_counter()
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(approval_worker())
        before, started = env.now(), time.perf_counter()
        run = await env.client.start(
            "approval", {"request": "new laptop", "sleep_s": DAY.total_seconds()}
        )
        await env.client.signal(run["id"], "approve", {"by": "ana"})
        result = await env.client.result(run["id"], timeout=WAIT)
        moved, workflow = env.now() - before, time.perf_counter() - started
    wall = time.perf_counter() - began
    print(
        f"approval with a one-day sleep: {workflow:.3f} s of wall time from start to result "
        f"(worker registration included), {wall:.3f} s with the environment's start and close; "
        f"the environment's time moved {moved}"
    )
    assert result == {"ticket": f"ticket-{run['id']}", "approved": True, "approval": {"by": "ana"}}
    assert moved >= DAY


async def test_run_lets_time_skip_once_the_run_is_started() -> None:
    """``env.client.run`` (start and result in one call) skips a sleep too."""
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(approval_worker())
        before = env.now()
        result = await env.client.run(
            "approval", {"request": "r", "sleep_s": 3 * 3600, "timeout_s": 60}, timeout=WAIT
        )
        assert result["approved"] is False  # nobody signalled: the wait timed out
        assert env.now() - before >= timedelta(hours=3, seconds=60)


async def test_a_signal_wait_timeout_is_skipped() -> None:
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(approval_worker())
        before = env.now()
        run = await env.client.start("approval", {"request": "r", "timeout_s": 2 * 3600})
        result = await env.client.result(run["id"], timeout=WAIT)
        assert result["approved"] is False
        assert "approve" in result["reason"]
        assert env.now() - before >= timedelta(hours=2)


async def test_time_does_not_skip_while_nobody_awaits_a_result() -> None:
    """The run sleeps an hour; a test that has not asked for the result yet may still signal
    it, so time stands still (at real time's pace) until it does."""
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(approval_worker())
        start = env.now()
        run = await env.client.start("approval", {"request": "r", "sleep_s": 3600})
        await status_is(env, run["id"], "suspended")
        [entry] = [e for e in await env.client.journal(run["id"]) if e.get("kind") == "sleep"]
        assert entry["pending"] is True
        assert env.now() - start < timedelta(seconds=WAIT)
        await env.client.signal(run["id"], "approve", "yes")
        assert (await env.client.result(run["id"], timeout=WAIT))["approval"] == "yes"


async def test_time_stays_while_the_awaited_run_waits_only_for_a_signal() -> None:
    """Nothing time brings can finish a run that waits for a signal without a timeout: time
    does not jump (not even to the engine's stale lease timers) while its result is awaited."""
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(approval_worker())
        before = env.now()
        run = await env.client.start("approval", {"request": "r"})
        await status_is(env, run["id"], "suspended")
        with pytest.raises(TimeoutError):
            await env.client.result(run["id"], timeout=0.3)
        assert env.now() - before < timedelta(seconds=WAIT)
        await env.client.signal(run["id"], "approve", "late")
        assert (await env.client.result(run["id"], timeout=WAIT))["approval"] == "late"


def flaky_worker() -> tuple[trine.Worker, list[int]]:
    """``flaky``: a step that fails on its first try and is retried an hour later."""
    worker = trine.Worker(worker_id="flaky")
    tries: list[int] = []

    def attempt() -> int:
        tries.append(len(tries) + 1)
        if len(tries) == 1:
            raise RuntimeError("the first try fails")
        return len(tries)

    @worker.function
    async def flaky(ctx: trine.Context, _: None) -> int:
        hourly = trine.RetryPolicy(max_attempts=2, initial_interval=3600, max_interval=3600)
        return await ctx.step("attempt", attempt, retry=hourly)

    @worker.function
    async def parent(ctx: trine.Context, days: int) -> str:
        return await ctx.run(child, days)

    @worker.function
    async def child(ctx: trine.Context, days: int) -> str:
        await ctx.sleep(timedelta(days=days))
        return f"slept {days} days"

    @worker.function
    async def waits_forever(ctx: trine.Context, _: None) -> Any:
        return await ctx.wait_for_signal("never")

    return worker, tries


async def test_a_retry_backoff_a_child_run_and_a_run_deadline_are_skipped() -> None:
    worker, tries = flaky_worker()
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(worker)
        before = env.now()
        assert await env.client.run("flaky", None, timeout=WAIT) == 2
        assert tries == [1, 2]
        assert env.now() - before >= timedelta(hours=1)

        before = env.now()
        assert await env.client.run("parent", 3, timeout=WAIT) == "slept 3 days"
        assert env.now() - before >= timedelta(days=3)

        before = env.now()
        with pytest.raises(trine.RunFailedError, match="RunTimeout"):
            await env.client.run("waits_forever", None, timeout=WAIT, run_timeout=7 * 86400)
        assert env.now() - before >= timedelta(days=7)


async def test_advance_fires_a_due_timer() -> None:
    """Without time skipping, time moves only with real time and ``advance``."""
    async with WorkflowEnvironment() as env:
        env.start_worker(approval_worker())
        start = env.now()
        run = await env.client.start("approval", {"request": "r", "sleep_s": 3600})
        await env.client.signal(run["id"], "approve", "ok")
        await status_is(env, run["id"], "suspended")
        with pytest.raises(TimeoutError):
            await env.client.wait(run["id"], timeout=0.2)  # the hour has not passed

        await env.advance(timedelta(minutes=30))
        with pytest.raises(TimeoutError):
            await env.client.wait(run["id"], timeout=0.2)  # half of it has

        await env.advance(1800)
        result = await env.client.result(run["id"], timeout=WAIT)
        assert result["approved"] is True
        assert env.now() - start >= timedelta(hours=1)


async def test_advance_while_a_step_runs_keeps_its_lease() -> None:
    """The engine measures leases on the clock ``advance`` moves: the step's attempt survives a
    jump of 30 s (the usual lease TTL) and one of a day, and its run completes on that attempt."""
    worker = trine.Worker(worker_id="holder")
    entered, release = asyncio.Event(), asyncio.Event()
    executions: list[str] = []

    async def hold() -> str:
        executions.append("hold")
        entered.set()
        await release.wait()
        return "held"

    @worker.function
    async def holding(ctx: trine.Context, _: None) -> str:
        return await ctx.step("hold", hold)

    async with WorkflowEnvironment() as env:
        env.start_worker(worker)
        run = await env.client.start("holding", None)
        await asyncio.wait_for(entered.wait(), WAIT)
        await env.advance(30)
        await env.advance(timedelta(days=1))
        release.set()
        assert await env.client.result(run["id"], timeout=WAIT) == "held"
        assert executions == ["hold"]
        assert (await env.client.get(run["id"]))["attempt"] == 1


async def test_advance_refuses_to_go_back() -> None:
    async with WorkflowEnvironment() as env:
        with pytest.raises(ValueError, match="forward"):
            await env.advance(-1)


async def test_without_time_skipping_a_quick_workflow_runs_in_real_time() -> None:
    worker = trine.Worker(worker_id="greeter")

    @worker.function
    async def greet(ctx: trine.Context, name: str) -> str:
        return await ctx.step("hello", lambda: f"hello {name}")

    async with WorkflowEnvironment() as env:
        env.start_worker(worker)
        wall_before, before = datetime.now(UTC), env.now()
        assert await env.client.run(greet, "ana", timeout=WAIT) == "hello ana"
        assert await env.client.run("greet", "bo", timeout=WAIT) == "hello bo"
        elapsed = env.now() - before
        assert elapsed <= datetime.now(UTC) - wall_before + timedelta(milliseconds=5)


async def test_start_time_sets_the_clock() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    async with WorkflowEnvironment(start_time=start) as env:
        assert timedelta(0) <= env.now() - start < timedelta(seconds=WAIT)
    with pytest.raises(ValueError, match="aware"):
        WorkflowEnvironment(start_time=datetime(2030, 1, 1))


async def test_two_environments_side_by_side_are_isolated() -> None:
    async with (
        WorkflowEnvironment(time_skipping=True) as first,
        WorkflowEnvironment(time_skipping=True) as second,
    ):
        assert first.url != second.url
        assert first.worker_address != second.worker_address
        first.start_worker(approval_worker("first"))
        second.start_worker(approval_worker("second"))
        run = await first.client.start("approval", {"request": "r", "sleep_s": 0})
        with pytest.raises(trine.ClientError) as refused:
            await second.client.get(run["id"])
        assert refused.value.code == "run_not_found"

        second_before = second.now()
        await first.advance(DAY)
        assert second.now() - second_before < timedelta(hours=1)

        runs = await asyncio.gather(
            first.client.run("approval", {"request": "a", "timeout_s": 3600}, timeout=WAIT),
            second.client.run("approval", {"request": "b", "timeout_s": 7200}, timeout=WAIT),
        )
        assert [r["approved"] for r in runs] == [False, False]


async def test_closing_leaves_no_tasks_ports_or_files() -> None:
    tasks_before = asyncio.all_tasks()
    worker = approval_worker()
    address = worker.address
    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(worker)
        # One run finished, one left sleeping, one left waiting for a signal.
        await env.client.run("approval", {"request": "a", "timeout_s": 60}, timeout=WAIT)
        sleeping = await env.client.start("approval", {"request": "b", "sleep_s": 3600})
        await status_is(env, sleeping["id"], "suspended")
        data_dir = env.data_dir
        http_port = int(env.url.rsplit(":", 1)[1])
        worker_port = int(env.worker_address.rsplit(":", 1)[1])
        assert await asyncio.to_thread(data_dir.is_dir)
    leftover = asyncio.all_tasks() - tasks_before
    assert not leftover, leftover
    assert not await asyncio.to_thread(data_dir.exists)
    for port in (http_port, worker_port):
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    assert worker.address == address  # pointed back where it was
    with pytest.raises(RuntimeError, match="not started"):
        _ = env.client


async def test_a_worker_that_cannot_serve_fails_the_client_request() -> None:
    async with WorkflowEnvironment() as env:
        env.start_worker(trine.Worker(worker_id="empty"))  # no functions
        with pytest.raises(RuntimeError, match="no functions"):
            await env.client.list_functions()


async def test_one_worker_id_serves_once_per_environment() -> None:
    async with WorkflowEnvironment() as env:
        env.start_worker(approval_worker("same"))
        with pytest.raises(ValueError, match="own id"):
            env.start_worker(approval_worker("same"))


def test_the_sdk_imports_without_the_runtime() -> None:
    """``import trine`` and ``import trine.testing`` need no runtime; using the environment
    names what to install."""
    probe = (
        "import sys\n"
        "for name in ('trine_core', 'trine_engine', 'trine_coordinator', 'trine_gateway'):\n"
        "    sys.modules[name] = None  # as if not installed\n"
        "import trine, trine.testing\n"
        "try:\n"
        "    trine.testing.WorkflowEnvironment\n"
        "except ModuleNotFoundError as missing:\n"
        "    print(missing)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'trine[testing]'" in out


async def test_the_tests_in_docs_testing_md_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/testing.md's code, as a user would run it: its tests of ``approval_worker``, one
    after the other, with the one worker they import."""
    doc = await asyncio.to_thread(TESTING_DOC.read_text)
    code = "\n".join(block.split("```", 1)[0] for block in doc.split("```python\n")[1:])
    monkeypatch.setitem(sys.modules, "approval_worker", approval_module("approval_worker"))
    namespace: dict[str, Any] = {}
    exec(compile(code, str(TESTING_DOC), "exec"), namespace)
    tests = {name: fn for name, fn in namespace.items() if name.startswith("test_")}
    assert len(tests) == 3, sorted(tests)
    for test in tests.values():
        await test()
