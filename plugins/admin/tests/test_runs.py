"""``trine runs …`` against the real gateway in front of the in-memory engine."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from served import Served

from trine_proto.trine.v1 import ErrorInfo


async def start(gateway: Served, *argv: str) -> str:
    result = await gateway.run("runs", "start", *argv)
    assert (result.code, result.err) == (0, ""), result
    run_id = result.out.strip()
    assert len(run_id) == 26, result.out  # the id alone: RUN=$(trine runs start …)
    return run_id


async def test_start_prints_the_id_and_show_the_run(gateway: Served) -> None:
    run_id = await start(gateway, "order", '{"order_id": "o-1"}', "--idempotency-key", "k-1")
    shown = await gateway.run("runs", "show", run_id)
    assert shown.code == 0
    lines = shown.out.splitlines()
    assert lines[0] == f"id               {run_id}"
    assert "function         order" in lines
    assert "status           pending" in lines
    assert "idempotency key  k-1" in lines
    assert "input            {" in lines
    assert '                   "order_id": "o-1"' in lines

    again = await gateway.run("runs", "show", run_id, "--json")
    run = again.json()
    assert (run["id"], run["input"], run["status"]) == (run_id, {"order_id": "o-1"}, "pending")
    # the same key and request give the same run; the key with another request is refused
    again_id = await start(gateway, "order", '{"order_id": "o-1"}', "--idempotency-key", "k-1")
    assert again_id == run_id
    other = await gateway.run("runs", "start", "order", "{}", "--idempotency-key", "k-1")
    assert other.code == 1
    assert other.err.startswith("error: idempotency_conflict: ")


async def test_show_of_a_finished_run_has_its_result_or_its_error_and_traceback(
    gateway: Served,
) -> None:
    done = await start(gateway, "order")
    await gateway.finish(done, {"ok": True})
    shown = await gateway.run("runs", "show", done)
    assert "status           completed" in shown.out
    assert "result           {" in shown.out
    assert '"ok": true' in shown.out

    failed = await start(gateway, "order")
    error = ErrorInfo(type="ValueError", message="bad card", traceback="Traceback\n  line 1\n")
    await gateway.finish(failed, error=error)
    shown = await gateway.run("runs", "show", failed)
    lines = shown.out.splitlines()
    assert "status           failed" in lines
    assert "error            ValueError: bad card" in lines
    assert lines[-2:] == ["traceback        Traceback", "                   line 1"]
    assert "result" not in shown.out


async def test_input_from_a_file_and_from_stdin(
    gateway: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "order.json"
    path.write_text('{"order_id": "from-file"}')
    from_file = await start(gateway, "order", f"@{path}")
    monkeypatch.setattr("sys.stdin", io.StringIO('["from", "stdin"]'))
    from_stdin = await start(gateway, "order", "-")
    no_input = await start(gateway, "order")
    after_an_option = await start(gateway, "order", "--idempotency-key", "k-2", '{"late": 1}')
    inputs = [
        (await gateway.run("runs", "show", run_id, "--json")).json()["input"]
        for run_id in (from_file, from_stdin, no_input, after_an_option)
    ]
    assert inputs == [{"order_id": "from-file"}, ["from", "stdin"], None, {"late": 1}]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("{order", "INPUT is not valid JSON: Expecting property name enclosed in double quotes"),
        (
            "hello",
            "INPUT is not valid JSON: Expecting value: line 1 column 1 (char 0); "
            "a JSON string has quotes: '\"hello\"'",
        ),
        ("NaN", "INPUT is not valid JSON: NaN is not JSON"),
        ("@/nonexistent/x.json", "cannot read INPUT from /nonexistent/x.json: No such file"),
    ],
)
async def test_bad_input_is_a_usage_error(gateway: Served, given: str, says: str) -> None:
    result = await gateway.run("runs", "start", "order", given)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[0].startswith("usage: trine runs start ")
    assert lines[-1].startswith(f"trine runs start: error: {says}")
    assert not gateway.memory.calls  # nothing was sent


async def test_api_errors_are_one_line_with_the_code_and_exit_1(gateway: Served) -> None:
    result = await gateway.run("runs", "show", "01NOSUCHRUN0000000000000000")
    assert (result.code, result.out) == (1, "")
    assert result.err == "error: run_not_found: no run '01NOSUCHRUN0000000000000000'\n"

    result = await gateway.run("runs", "start", "nosuch", "{}")
    assert result.code == 1
    assert result.err.startswith("error: unknown_function: ")
    assert "order" in result.err
    assert "approval" in result.err
    assert len(result.err.splitlines()) == 1

    result = await gateway.run("runs", "journal", "nope")
    assert (result.code, result.err) == (1, "error: run_not_found: no run 'nope'\n")


async def test_list_filters_pages_and_prints_a_table(gateway: Served) -> None:
    ids = [await start(gateway, "order") for _ in range(3)]
    other = await start(gateway, "approval")
    await gateway.finish(ids[0], "done")

    listed = await gateway.run("runs", "list")
    header, *rows = listed.out.splitlines()
    assert header.split() == ["ID", "FUNCTION", "STATUS", "ATTEMPT", "CREATED", "UPDATED"]
    assert [row.split()[0] for row in rows] == [*ids, other]
    assert rows[0].split()[1:3] == ["order", "completed"]
    assert listed.err == ""

    by_status = await gateway.run("runs", "list", "--status", "pending", "--function", "order")
    assert [row.split()[0] for row in by_status.out.splitlines()[1:]] == ids[1:]

    first = await gateway.run("runs", "list", "--limit", "2")
    assert [row.split()[0] for row in first.out.splitlines()[1:]] == ids[:2]
    assert first.err == f"more: trine runs list --limit 2 --page-token {ids[1]}\n"
    second = await gateway.run("runs", "list", "--limit", "2", "--page-token", ids[1])
    assert [row.split()[0] for row in second.out.splitlines()[1:]] == [ids[2], other]
    assert second.err == ""

    every = await gateway.run("runs", "list", "--limit", "1", "--all", "--json")
    document = every.json()
    assert [run["id"] for run in document["runs"]] == [*ids, other]
    assert document["next_page_token"] is None

    page = (await gateway.run("runs", "list", "--limit", "1", "--json")).json()
    assert list(page) == ["runs", "next_page_token"]
    assert page["next_page_token"] == ids[0]

    none = await gateway.run("runs", "list", "--function", "nosuch")
    assert (none.code, none.out, none.err) == (0, "", "no runs\n")


async def test_list_usage_errors(gateway: Served) -> None:
    for argv in (["--limit", "0"], ["--status", "sleeping"], ["--limit", "many"]):
        result = await gateway.run("runs", "list", *argv)
        assert result.code == 2, argv
        assert "trine runs list: error: argument" in result.err


async def test_journal_is_a_table_of_entries(gateway: Served) -> None:
    run_id = await start(gateway, "approval")
    empty = await gateway.run("runs", "journal", run_id)
    assert (empty.code, empty.out) == (0, "")
    assert empty.err == f"run {run_id} has no journal entries yet\n"
    await gateway.suspend(run_id)
    journal = await gateway.run("runs", "journal", run_id)
    header, step, wait = journal.out.splitlines()
    assert header.split() == [
        "INDEX", "KIND", "NAME", "ATTEMPT", "STARTED", "DURATION", "OUTCOME"
    ]  # fmt: skip
    assert step.split()[:4] == ["0", "step", "open", "1"]
    assert step.endswith('"ticket-1"')
    assert wait.split()[:3] == ["1", "signal", "approve"]
    assert wait.endswith("waiting")
    document = (await gateway.run("runs", "journal", run_id, "--json")).json()
    assert [e["kind"] for e in document["entries"]] == ["step", "signal"]

    shown = await gateway.run("runs", "show", run_id)
    assert "waiting          signal 'approve' [journal 1]" in shown.out.splitlines()


async def test_events_of_a_finished_run_print_and_end(gateway: Served) -> None:
    run_id = await start(gateway, "order")
    await gateway.finish(run_id, {"ok": True})
    events = await gateway.run("runs", "events", run_id)
    assert events.code == 0
    types = [line.split()[2] for line in events.out.splitlines()]
    assert types == ["run.started", "step.started", "step.completed", "run.completed"]
    first = events.out.splitlines()[0].split()
    assert first[0].endswith("Z")
    assert first[1] == "1"

    lines = (await gateway.run("runs", "events", run_id, "--json")).out.splitlines()
    documents = [json.loads(line) for line in lines]
    assert [d["seq"] for d in documents] == [1, 2, 3, 4]
    assert list(documents[0]) == ["seq", "type", "name", "data", "at"]
    assert documents[-1]["data"] == {"ok": True}

    after = await gateway.run("runs", "events", run_id, "--after", "2", "--json")
    assert [json.loads(line)["seq"] for line in after.out.splitlines()] == [3, 4]


async def test_events_follow_a_run_live_until_its_final_event(gateway: Served) -> None:
    run_id = await start(gateway, "order")
    follow = asyncio.create_task(gateway.run("runs", "events", run_id, "--json"))
    await gateway.memory.until(lambda: bool(gateway.memory.open_subscriptions))
    assert not follow.done()
    await gateway.finish(run_id, "shipped")
    result = await asyncio.wait_for(follow, 10)
    assert result.code == 0
    assert json.loads(result.out.splitlines()[-1])["type"] == "run.completed"


async def test_events_of_an_unknown_run_fail_at_once(gateway: Served) -> None:
    result = await gateway.run("runs", "events", "nope")
    assert result.code == 1
    assert result.err.startswith("error: run_not_found: ")
    assert len(result.err.splitlines()) == 1


async def test_start_wait_prints_the_result_or_fails_with_exit_4(gateway: Served) -> None:
    waiting = asyncio.create_task(gateway.run("runs", "start", "order", "{}", "--wait"))
    run_id = await started(gateway, 1)
    await gateway.finish(run_id, {"shipped": True})
    result = await asyncio.wait_for(waiting, 10)
    assert result.code == 0
    assert json.loads(result.out) == {"shipped": True}
    assert result.err == f"run {run_id} (order) started; waiting for it to end\n"

    waiting = asyncio.create_task(gateway.run("runs", "start", "order", "--wait", "--json"))
    run_id = await started(gateway, 2)
    await gateway.finish(run_id, error=ErrorInfo(type="KeyError", message="x", traceback="tb"))
    result = await asyncio.wait_for(waiting, 10)
    assert result.code == 4
    assert result.json()["status"] == "failed"

    waiting = asyncio.create_task(gateway.run("runs", "start", "order", "--wait"))
    run_id = await started(gateway, 3)
    await gateway.finish(run_id, error=ErrorInfo(type="KeyError", message="x", traceback="tb"))
    result = await asyncio.wait_for(waiting, 10)
    assert (result.code, result.out) == (4, "")
    assert result.err.splitlines()[1:] == [f"error: run {run_id} failed: KeyError: x", "tb"]


async def started(gateway: Served, count: int) -> str:
    """The id of the run the ``count``-th ``--wait`` waits for, once it waits."""
    waits = await gateway.memory.called("wait_run", count)
    run_id: str = waits[count - 1].run_id
    return run_id


async def test_cancel(gateway: Served) -> None:
    pending = await start(gateway, "order")
    result = await gateway.run("runs", "cancel", pending, "--reason", "not needed")
    assert (result.code, result.out) == (0, f"run {pending}: cancelled\n")
    shown = (await gateway.run("runs", "show", pending, "--json")).json()
    assert "not needed" in shown["error"]["message"]

    again = await gateway.run("runs", "cancel", pending)
    assert again.code == 1
    assert again.err.startswith("error: run_finished: ")

    waiting = await start(gateway, "approval")
    await gateway.suspend(waiting)
    requested = await gateway.run("runs", "cancel", waiting, "--wait", "0.2")
    assert requested.code == 4
    assert requested.out.startswith(f"run {waiting}: cancellation requested (")
    assert requested.err == f"error: run {waiting} has not ended after 0.2 s\n"
    as_json = await gateway.run("runs", "cancel", waiting, "--json")
    assert (as_json.code, as_json.json()["cancel_requested"]) == (0, True)

    too_long = await gateway.run("runs", "cancel", waiting, "--wait", "301")
    assert too_long.code == 2


async def test_signal(gateway: Served) -> None:
    run_id = await start(gateway, "approval")
    kept = await gateway.run("runs", "signal", run_id, "approve", '{"by": "ana"}')
    assert (kept.code, kept.out) == (
        0,
        f"signal 'approve' kept for run {run_id} until it waits for it (pending)\n",
    )
    other = await start(gateway, "approval")
    await gateway.suspend(other)
    delivered = await gateway.run("runs", "signal", other, "approve", "true", "--json")
    answer = delivered.json()
    assert (answer["delivered"], answer["signal"], answer["run_id"]) == (True, "approve", other)

    bad = await gateway.run("runs", "signal", run_id, "no spaces")
    assert bad.code == 1
    assert bad.err.startswith("error: invalid_argument: ")
    assert (await gateway.run("runs", "signal", run_id, "approve", "{")).code == 2


async def test_json_is_taken_before_and_after_the_subcommand(gateway: Served) -> None:
    run_id = await start(gateway, "order")
    before = await gateway.run("runs", "--json", "show", run_id)
    after = await gateway.run("runs", "show", run_id, "--json")
    assert before.json() == after.json()
