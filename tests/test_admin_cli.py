"""The admin CLI (``trine runs …``, ``trine workers``, ``trine functions``; trine-admin) against a
live runtime in every topology, run as a user runs it: the ``trine`` program in a process of its
own, the gateway's URL from ``TRINE_URL`` or ``--url``. Every subcommand, ``--json``, and the exit
codes: 1 with the API's code, 2 for usage, 3 for a URL nothing answers at, 4 for a run waited for
that did not complete, 130 for Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import ORDER, ROOT, Cluster, wait_run

from trine_core.testing import free_port

TIMEOUT = 60.0


def trine(
    cluster: Cluster, *argv: str, stdin: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``trine <argv>`` with ``TRINE_URL`` naming the cluster's gateway (or ``url``)."""
    return subprocess.run(
        [sys.executable, "-m", "trine_core.cli", *argv],
        cwd=ROOT,
        env=env(url or cluster.url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def env(url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRINE_")}
    return {**clean, "TRINE_URL": url, "PYTHONUNBUFFERED": "1"}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def rows(table: str) -> list[list[str]]:
    """A table's rows (its header left out), each split on whitespace."""
    return [line.split() for line in table.splitlines()[1:]]


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a failure prints, after checking the exit code and that nothing else came."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr


def test_every_subcommand_in_tables_and_json(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("order_worker.py")
    cluster.start_worker("approval_worker.py")

    functions = ok(trine(cluster, "functions"))
    assert {row[0] for row in rows(functions)} == {"order", "approval"}
    names = {f["name"] for f in json.loads(ok(trine(cluster, "functions", "--json")))["functions"]}
    assert names == {"order", "approval"}

    # start --wait: the result on stdout, from a file
    order = tmp_path / "order.json"
    order.write_text(json.dumps(ORDER))
    waited = trine(cluster, "runs", "start", "order", f"@{order}", "--wait")
    result = json.loads(ok(waited))
    assert (result["order_id"], result["status"]) == ("o-1", "completed")
    assert waited.stderr.startswith("run ")

    # start: the id alone on stdout, the input from stdin
    run_id = ok(trine(cluster, "runs", "start", "order", "-", stdin=json.dumps(ORDER))).strip()
    final = json.loads(ok(trine(cluster, "runs", "start", "order", "--wait", "--json",
                                json.dumps({**ORDER, "order_id": "o-2"}))))  # fmt: skip
    assert final["status"] == "completed"

    events = ok(trine(cluster, "runs", "events", run_id, "--json"))  # follows until the end
    documents = [json.loads(line) for line in events.splitlines()]
    assert [d["seq"] for d in documents] == list(range(1, len(documents) + 1))
    assert documents[-1]["type"] == "run.completed"
    table = ok(trine(cluster, "runs", "events", run_id))
    assert [line.split()[2] for line in table.splitlines()] == [d["type"] for d in documents]

    shown = ok(trine(cluster, "runs", "show", run_id))
    assert f"id               {run_id}" in shown.splitlines()
    assert "status           completed" in shown.splitlines()
    assert '"order_id": "o-1"' in shown  # input and result
    run = json.loads(ok(trine(cluster, "runs", "show", run_id, "--json")))
    assert (run["id"], run["input"], run["result"]["status"]) == (run_id, ORDER, "completed")

    journal = ok(trine(cluster, "runs", "journal", run_id))
    assert [row[:3] for row in rows(journal)] == [
        ["0", "step", "validate"],
        ["1", "step", "charge"],
        ["2", "step", "ship"],
    ]
    entries = json.loads(ok(trine(cluster, "runs", "journal", run_id, "--json")))["entries"]
    assert [e["name"] for e in entries] == ["validate", "charge", "ship"]

    listed_runs = ok(trine(cluster, "runs", "list", "--function", "order"))
    assert {row[0] for row in rows(listed_runs)} >= {run_id, final["id"]}
    assert all(row[1:3] == ["order", "completed"] for row in rows(listed_runs))
    page = json.loads(ok(trine(cluster, "runs", "list", "--limit", "1", "--json")))
    assert len(page["runs"]) == 1
    assert page["next_page_token"]
    every = json.loads(ok(trine(cluster, "runs", "list", "--limit", "1", "--all", "--json")))
    assert len(every["runs"]) == 3

    # signal: a run waiting for `approve` resumes with the payload
    approval = ok(trine(cluster, "runs", "start", "approval", '{"sleep_s": 0}')).strip()
    sent = json.loads(
        ok(trine(cluster, "runs", "signal", approval, "approve", '{"by": "ana"}', "--json"))
    )
    assert sent["signal"] == "approve"
    with cluster.client() as http:
        assert wait_run(http, approval)["result"]["approval"] == {"by": "ana"}
    completed = rows(ok(trine(cluster, "runs", "list", "--status", "completed")))
    assert approval in {row[0] for row in completed}
    assert {row[2] for row in completed} == {"completed"}

    # cancel: a sleeping run cleans up (a step) and ends cancelled within the wait
    sleeping = ok(trine(cluster, "runs", "start", "approval", '{"sleep_s": 600}')).strip()
    wait_until_suspended(cluster, sleeping)
    cancelled = ok(trine(cluster, "runs", "cancel", sleeping, "--reason", "no", "--wait", "30"))
    assert cancelled == f"run {sleeping}: cancelled\n"
    again = failed(trine(cluster, "runs", "cancel", sleeping), 1)
    assert again.startswith("error: run_finished: ")


def test_workers_lists_the_connected_workers(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("order_worker.py")
    cluster.start_worker("approval_worker.py", "--max-concurrency", "7")
    listed = json.loads(ok(trine(cluster, "workers", "--json")))["workers"]
    assert sorted(f for w in listed for f in w["functions"]) == ["approval", "order"]
    table = rows(ok(trine(cluster, "workers")))
    by_functions = {row[1]: row for row in table}
    assert set(by_functions) == {"order", "approval"}
    assert by_functions["approval"][2:5] == ["7", "0", "7"]  # max, in flight, free


def wait_until_suspended(cluster: Cluster, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    with cluster.client() as http:
        while True:
            run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()
            if run["status"] == "suspended" or time.monotonic() > deadline:
                assert run["status"] == "suspended", run
                return run
            time.sleep(0.05)


def test_errors_are_one_line_with_their_exit_codes(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("order_worker.py", ORDER_STEP_DELAY_S="5")

    unknown_run = failed(trine(cluster, "runs", "show", "01JUNKNOWN0000000000000000"), 1)
    assert unknown_run.startswith("error: run_not_found: ")
    assert len(unknown_run.splitlines()) == 1
    assert failed(trine(cluster, "runs", "events", "nope"), 1).startswith("error: run_not_found: ")
    unknown_function = failed(trine(cluster, "runs", "start", "nosuch", "{}"), 1)
    assert unknown_function.startswith("error: unknown_function: ")
    assert len(unknown_function.splitlines()) == 1

    bad_json = failed(trine(cluster, "runs", "start", "order", "{order"), 2)
    assert bad_json.splitlines()[-1].startswith(
        "trine runs start: error: INPUT is not valid JSON: "
    )
    assert failed(trine(cluster, "runs", "list", "--limit", "0"), 2).startswith("usage: ")
    assert failed(trine(cluster, "nosuch"), 2).startswith("trine: error: unknown command")

    nowhere = f"http://127.0.0.1:{free_port()}"
    for argv in (["runs", "list"], ["workers"], ["runs", "events", "r"]):
        unreachable = failed(trine(cluster, *argv, "--url", nowhere), 3)
        assert unreachable.startswith(f"error: cannot reach the trine gateway at {nowhere}: ")
        assert len(unreachable.splitlines()) == 1
    from_env = failed(trine(cluster, "functions", url=nowhere), 3)
    assert nowhere in from_env

    # a run waited for that fails: exit 4, its error on stderr
    slow = json.dumps(ORDER)  # each step takes 5 s: the run's 0.5 s deadline passes first
    failing = trine(cluster, "runs", "start", "order", slow, "--timeout", "0.5", "--wait")
    assert failing.returncode == 4, (failing.stdout, failing.stderr)
    assert "failed: RunTimeout: " in failing.stderr

    # the role-starting command line is unchanged
    help_text = ok(trine(cluster, "--help"))
    assert "--target" in help_text
    listed = help_text.split("commands: ", 1)[1].split("\n", 1)[0]
    assert {"runs", "workers", "functions", "builds", "replay", "check"} <= set(listed.split(", "))


def test_events_follow_live_and_ctrl_c_ends_them_cleanly(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("approval_worker.py")
    run_id = ok(trine(cluster, "runs", "start", "approval", '{"sleep_s": 0}')).strip()

    follow = follower(cluster, run_id)
    first = follow.stdout.readline() if follow.stdout else ""
    assert json.loads(first)["type"] == "run.started"
    ok(trine(cluster, "runs", "signal", run_id, "approve", "true"))
    out, err = follow.communicate(timeout=TIMEOUT)
    assert follow.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["type"] == "run.completed"

    sleeping = ok(trine(cluster, "runs", "start", "approval", '{"sleep_s": 600}')).strip()
    follow = follower(cluster, sleeping)
    try:
        assert follow.stdout is not None
        assert json.loads(follow.stdout.readline())["type"] == "run.started"
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=TIMEOUT)
    finally:
        if follow.poll() is None:  # a failed test leaves no follower behind
            follow.kill()
            follow.communicate()
    assert follow.returncode == 130
    assert err == ""  # no traceback, no message


def follower(cluster: Cluster, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trine_core.cli", "runs", "events", run_id, "--json"],
        cwd=ROOT,
        env=env(cluster.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
