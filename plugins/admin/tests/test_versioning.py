"""The commands of docs/versioning.md against the real gateway in front of the in-memory engine:
``trine runs retry|move|history``, ``trine builds``, ``trine replay``, and builds and blocked runs
in ``trine runs show|list``."""

from __future__ import annotations

from typing import Any

import pytest
from served import Served, run_cli

from trine_core.cli import main as trine_main
from trine_core.testing import free_port
from trine_proto.trine.v1 import (
    Command,
    ErrorInfo,
    FunctionSpec,
    Patched,
    ReleaseLeasesRequest,
    VersioningMode,
)

DRIFT = ErrorInfo(
    type="NonDeterminismError", message="at 0: journal has step 'a', code calls 'b'", traceback=""
)
MARKER = Command(patched=Patched(index=0, change_id="c"))
"""A report that changes nothing but gives a run with no build yet the reporter's build."""


async def start(gateway: Served, function: str = "order") -> str:
    result = await gateway.run("runs", "start", function)
    assert result.code == 0, result
    return result.out.strip()


def sent(gateway: Served, method: str) -> list[Any]:
    """The requests of every ``method`` call the engine received."""
    return [request for name, request in gateway.memory.calls if name == method]


# -- retry ---------------------------------------------------------------------------------------


async def test_retry_a_failed_run(gateway: Served) -> None:
    run_id = await start(gateway)
    await gateway.finish(run_id, error=ErrorInfo(type="ValueError", message="bad card"))
    result = await gateway.run("runs", "retry", run_id, "--reason", "card fixed")
    assert (result.code, result.err) == (0, ""), result
    assert result.out == f"run {run_id}: retried (pending, retry 1)\n"
    (request,) = sent(gateway, "retry_run")
    assert (request.run_id, request.reason) == (run_id, "card fixed")
    again = await gateway.run("runs", "retry", run_id)
    assert again.code == 1
    assert again.err.startswith(f"error: run_not_retryable: run {run_id} is pending")
    missing = await gateway.run("runs", "retry", "nope")
    assert (missing.code, missing.err.split(":")[:2]) == (1, ["error", " run_not_found"])


async def test_retry_a_blocked_run_with_json(gateway: Served) -> None:
    run_id = await start(gateway)
    await gateway.block(run_id, DRIFT)
    result = await gateway.run("runs", "retry", run_id, "--json")
    assert result.code == 0, result
    run = result.json()
    assert (run["id"], run["status"], run["retries"], run["error"]) == (run_id, "pending", 1, None)
    (request,) = sent(gateway, "retry_run")
    assert request.reason == ""


# -- move ----------------------------------------------------------------------------------------


async def pinned_run(gateway: Served) -> str:
    """A run of a pinned ``order`` taken by build b-1, whose first report gave it that build;
    b-2 serves ``order`` too."""
    pinned = FunctionSpec(name="order", versioning=VersioningMode.PINNED)
    gateway.build_id = "b-2"
    await gateway.register(pinned)
    gateway.build_id = "b-1"
    await gateway.register(pinned)
    run_id = await start(gateway)
    await gateway.report(await gateway.lease(run_id), MARKER)
    return run_id


async def test_move_a_run_to_another_build(gateway: Served) -> None:
    run_id = await pinned_run(gateway)
    result = await gateway.run("runs", "move", run_id, "--build", "b-2")
    assert (result.code, result.err) == (0, ""), result
    assert result.out == f"run {run_id}: moved to build b-2 (running)\n"
    shown = await gateway.run("runs", "show", run_id, "--json")
    assert shown.json()["build_id"] == "b-2"


async def test_move_to_an_unknown_build_names_the_known_ones(gateway: Served) -> None:
    run_id = await pinned_run(gateway)
    result = await gateway.run("runs", "move", run_id, "--build", "b-9")
    assert result.code == 1
    assert result.err.startswith("error: unknown_build: ")
    assert "b-9" in result.err
    assert result.err.rstrip().endswith("(known: b-1, b-2)")
    assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize("argv", [(), ("--build", ""), ("--build", "a b")])
async def test_move_needs_a_build(gateway: Served, argv: tuple[str, ...]) -> None:
    result = await gateway.run("runs", "move", "r", *argv)
    assert result.code == 2
    assert "--build" in result.err
    assert sent(gateway, "move_run") == []


# -- history -------------------------------------------------------------------------------------


async def test_history_prints_the_document_to_save(gateway: Served) -> None:
    run_id = await start(gateway)
    await gateway.finish(run_id, {"ok": True})
    result = await gateway.run("runs", "history", run_id)
    assert (result.code, result.err) == (0, ""), result
    history = result.json()
    assert history["format"] == "trine.history/1"
    assert history["run"] == (await gateway.run("runs", "show", run_id, "--json")).json()
    assert [(e["kind"], e["name"]) for e in history["journal"]] == [("step", "charge")]
    missing = await gateway.run("runs", "history", "nope")
    assert (missing.code, missing.out) == (1, "")


# -- builds, and builds in runs show and list ----------------------------------------------------


async def test_builds_table_and_json(gateway: Served) -> None:
    none = await gateway.run("builds")
    assert (none.code, none.out) == (0, "")
    assert none.err == "no builds known: no worker has registered with a build yet\n"
    await pinned_run(gateway)
    table = await gateway.run("builds")
    assert table.code == 0, table
    header, first, second = table.out.splitlines()
    assert header.split() == ["BUILD", "STATE", "OPEN", "RUNS", "FUNCTIONS", "LAST", "SEEN"]
    assert first.split()[:4] == ["b-1", "connected", "1", "order"]
    assert second.split()[:4] == ["b-2", "gone", "0", "order"]
    document = (await gateway.run("builds", "--json")).json()
    assert [b["build_id"] for b in document["builds"]] == ["b-1", "b-2"]
    assert set(document["builds"][0]) == {
        "build_id", "functions", "open_runs", "connected", "last_seen"
    }  # fmt: skip


async def test_show_and_list_a_blocked_run_with_its_builds(gateway: Served) -> None:
    gateway.build_id = "b-1"
    await gateway.register()
    plain = await start(gateway, "approval")  # never taken: no build
    run_id = await start(gateway)
    await gateway.block(run_id, DRIFT)
    shown = await gateway.run("runs", "show", run_id)
    lines = shown.out.splitlines()
    assert "status           blocked" in lines
    assert "build            b-1" in lines
    assert "blocked build    b-1 (its code raised the error; retry on fixed code)" in lines
    assert "error            NonDeterminismError: at 0: journal has step 'a', code calls 'b'" in (
        lines
    )
    assert not any(line.startswith("retries") for line in lines)
    listed = await gateway.run("runs", "list", "--status", "blocked")
    header, row = listed.out.splitlines()
    assert header.split()[-1] == "BUILD"
    assert row.split()[:3] == [run_id, "order", "blocked"]
    assert row.split()[-1] == "b-1"
    everything = (await gateway.run("runs", "list")).out.splitlines()
    assert [line.split()[0] for line in everything[1:]] == [plain, run_id]
    await gateway.run("runs", "retry", run_id)
    again = await gateway.run("runs", "show", run_id)
    assert "retries          1" in again.out.splitlines()


async def test_a_run_waiting_for_its_build_says_so(gateway: Served) -> None:
    gateway.build_id = "b-1"
    await gateway.register(FunctionSpec(name="order", versioning=VersioningMode.PINNED))
    run_id = await start(gateway)
    item = await gateway.lease(run_id)
    assert item.lease is not None
    await gateway.report(item, MARKER)  # the run's build: b-1's from now on
    await gateway.memory.dispatcher.release_leases(ReleaseLeasesRequest(lease_ids=[item.lease.id]))
    later = gateway.memory.clock() + 60_000  # b-1 last asked for work a minute ago
    gateway.memory.clock = lambda: later
    shown = await gateway.run("runs", "show", run_id)
    assert "waiting for      build b-1 (no worker of it is connected)" in shown.out.splitlines()
    listed = await gateway.run("runs", "list")
    assert "pending (waiting for build b-1)" in listed.out


# -- replay --------------------------------------------------------------------------------------


async def finished_runs(gateway: Served) -> list[str]:
    """Three finished runs of ``order`` (two completed, one failed), one cancelled, one of
    ``approval`` not finished: oldest first."""
    ids = []
    for n in range(3):
        run_id = await start(gateway)
        error = ErrorInfo(type="ValueError", message="bad card") if n == 1 else None
        await gateway.finish(run_id, "done", error=error)
        ids.append(run_id)
    cancelled = await start(gateway)
    await gateway.run("runs", "cancel", cancelled)
    await start(gateway, "approval")
    return ids


async def test_replay_of_the_same_code_passes(gateway: Served) -> None:
    ids = await finished_runs(gateway)
    result = await gateway.run("replay", "--worker", "replay_workers:same")
    assert result.code == 0, result
    assert result.out.splitlines() == [f"ok {run_id} order" for run_id in ids[::-1]]
    assert result.err == "3 runs replayed, 0 failed\n"


async def test_replay_of_a_change_fails_naming_the_run_and_the_calls(gateway: Served) -> None:
    ids = await finished_runs(gateway)
    result = await gateway.run("replay", "--worker", "replay_workers:changed", "--last", "2")
    assert result.code == 1, result
    fails = [line for line in result.out.splitlines() if not line.startswith("    ")]
    assert [line.split(":")[0] for line in fails] == [
        f"FAIL {run_id} order" for run_id in ids[::-1][:2]
    ]
    assert "refund" in result.out
    assert "charge" in result.out
    assert result.err == "2 runs replayed, 2 failed\n"


async def test_replay_of_chosen_functions_and_none_to_replay(gateway: Served) -> None:
    await finished_runs(gateway)
    result = await gateway.run(
        "replay", "--worker", "replay_workers:same", "--function", "approval"
    )
    assert (result.code, result.out) == (0, "")
    assert result.err == "no finished runs of approval to replay\n"
    assert sent(gateway, "get_journal") == []  # no history read: nothing listed


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--worker", "replay_workers"), "expected module:attribute"),
        (("--worker", "no_such_module:w"), "cannot import 'no_such_module'"),
        (("--worker", "replay_workers:nope"), "has no attribute 'nope'"),
        (("--worker", "replay_workers:not_a_worker"), "is a str, not a trine.Worker"),
        (("--worker", "replay_workers:same", "--function", "ship"), "does not serve it"),
        (("--worker", "replay_workers:same", "--last", "0"), "expected 1 to 1000"),
        ((), "the following arguments are required: --worker"),
    ],
)
async def test_replay_usage_errors_exit_2(
    gateway: Served, argv: tuple[str, ...], says: str
) -> None:
    result = await gateway.run("replay", *argv)
    assert result.code == 2, result
    assert says in result.err
    assert sent(gateway, "list_runs") == []


async def test_replay_with_no_gateway_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_cli(capsys, "replay", "--worker", "replay_workers:same", url=url)
    assert result.code == 3
    assert result.err.startswith(f"error: cannot reach the trine gateway at {url}: ")


def test_the_new_commands_are_the_trine_programs(capsys: pytest.CaptureFixture[str]) -> None:
    assert trine_main(["builds", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: trine builds ")
    assert trine_main(["replay", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trine replay ")
    assert "--worker MODULE:ATTR" in out
    assert trine_main(["runs", "--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("retry", "move", "history"):
        assert f"    {sub} " in out
