"""Changing workflows under in-flight runs (docs/versioning.md), in every topology: patches, builds
(pinned runs, moving them), replay checks of exported histories, retrying a failed run, and runs
blocked by a workflow error that resume when fixed code registers.

The workers are ``tests/workers/versioned_worker.py``: ``VERSIONED_CODE`` picks the code a process
serves and ``TRINE_BUILD_ID`` its build."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from harness import (
    ROOT,
    Cluster,
    send_signal,
    sse_events,
    start_run,
    wait_run,
    wait_until,
    waiting_for,
)

import trine
import trine.testing

VERSIONED = "tests/workers/versioned_worker.py"


def versioned_module() -> ModuleType:
    """The workers' module, imported here so a test replays histories against its code."""
    path = ROOT / VERSIONED
    spec = importlib.util.spec_from_file_location("versioned_worker", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``trine <args>`` against the cluster's gateway, importing workers from tests/workers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "workers"), "TRINE_URL": cluster.url}
    return subprocess.run(
        [sys.executable, "-m", "trine_core.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_is(status: str) -> Any:
    return lambda run: run["status"] == status


def observed(
    http: httpx.Client, run_id: str, predicate: Any, timeout: float = 30.0
) -> dict[str, Any]:
    """The run once ``predicate`` holds of a field the engine derives when read (no event marks
    it, so this reads again every 100 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if predicate(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id} never got there: {run}"
        time.sleep(0.1)


def test_a_patched_change_keeps_old_runs_on_their_path_and_replay_checks_catch_an_unguarded_one(
    cluster: Cluster,
) -> None:
    cluster.start()
    v1 = cluster.start_worker(VERSIONED, VERSIONED_CODE="v1", TRINE_BUILD_ID="build-a")
    with cluster.client() as http:
        old = start_run(http, "renewal", 1.0)
        wait_until(http, old["id"], waiting_for("sleep"))
        v1.terminate()
        cluster.start_worker(VERSIONED, VERSIONED_CODE="v2", TRINE_BUILD_ID="build-b")
        new = start_run(http, "renewal", 0)

        old_final = wait_run(http, old["id"])
        new_final = wait_run(http, new["id"])
        assert old_final["status"] == "completed", old_final
        assert old_final["result"] == ["open", "close"]  # its journal passed the patch point
        assert old_final["build_id"] == "build-a"
        assert new_final["result"] == ["open", "receipt", "close"]
        assert new_final["build_id"] == "build-b"
        new_journal = http.get(f"/v1/runs/{new['id']}/journal").raise_for_status().json()
        assert {"kind": "patch", "name": "add-receipt"}.items() <= new_journal["entries"][1].items()

        history = http.get(f"/v1/runs/{old['id']}/history").raise_for_status().json()
    assert history["format"] == "trine.history/1"
    assert history["run"]["id"] == old["id"]
    assert [e["name"] for e in history["journal"]] == ["open", "sleep", "close"]

    module = versioned_module()
    trine.testing.replay(module.WORKER_V2, history)
    trine.testing.replay(module.WORKER_V1, history)
    with pytest.raises(trine.NonDeterminismError) as caught:
        trine.testing.replay(module.WORKER_V2_UNGUARDED, history)
    message = str(caught.value)
    assert "step 'receipt'" in message
    assert "sleep" in message
    assert "ctx.patched(" in message

    # The same checks for CI, against the live runtime: `trine replay --worker module:attr`.
    passing = cli(cluster, "replay", "--worker", "versioned_worker:WORKER_V2")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert f"ok {old['id']}" in passing.stdout
    failing = cli(cluster, "replay", "--worker", "versioned_worker:WORKER_V2_UNGUARDED")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"FAIL {old['id']}" in failing.stdout
    assert "step 'receipt'" in failing.stdout


def test_a_pinned_run_waits_for_its_build_and_an_operator_can_move_it(cluster: Cluster) -> None:
    cluster.start()
    a = cluster.start_worker(VERSIONED, TRINE_BUILD_ID="build-a")
    with cluster.client() as http:
        first = start_run(http, "pinned_flow", None)
        second = start_run(http, "pinned_flow", None)
        for run in (first, second):
            wait_until(http, run["id"], waiting_for("signal"))
        a.terminate()
        cluster.start_worker(VERSIONED, TRINE_BUILD_ID="build-b")
        for run in (first, second):
            assert send_signal(http, run["id"], "go", None).status_code == 202
            waiting = observed(http, run["id"], lambda r: r["waiting_for_build"] == "build-a")
            assert waiting["status"] == "pending"
            assert waiting["build_id"] == "build-a"

        listed = http.get("/v1/builds").raise_for_status().json()["builds"]
        builds = {b["build_id"]: b for b in listed}
        assert builds["build-a"]["open_runs"] == 2
        assert not builds["build-a"]["connected"]
        assert builds["build-b"]["connected"]

        moved = http.post(f"/v1/runs/{second['id']}/move", json={"build_id": "build-b"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["build_id"] == "build-b"
        assert wait_run(http, second["id"])["result"] == "build-b"
        # Build B was free to take the first run all along and did not: it is pinned to A.
        assert http.get(f"/v1/runs/{first['id']}").json()["status"] == "pending"

        cluster.start_worker(VERSIONED, TRINE_BUILD_ID="build-a")
        final = wait_run(http, first["id"])
    assert final["status"] == "completed"
    assert final["result"] == "build-a"


def test_a_failed_run_is_retried_on_fixed_code_without_repeating_its_first_step(
    cluster: Cluster, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    cluster.start()
    buggy = cluster.start_worker(
        VERSIONED, VERSIONED_CODE="buggy", TRINE_BUILD_ID="build-1", VERSIONED_EFFECTS=str(effects)
    )
    with cluster.client() as http:
        started = http.post(
            "/v1/runs",
            json={"function": "checkout", "input": None},
            headers={"Idempotency-Key": "checkout-7"},
        )
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        failed = wait_run(http, run_id)
        assert failed["status"] == "failed"
        assert "card processor" in failed["error"]["message"]

        buggy.terminate()
        cluster.start_worker(
            VERSIONED,
            VERSIONED_CODE="fixed",
            TRINE_BUILD_ID="build-2",
            VERSIONED_EFFECTS=str(effects),
        )
        retried = http.post(f"/v1/runs/{run_id}/retry", json={"reason": "charge fixed"})
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] in ("pending", "running")
        final = wait_run(http, run_id)
        assert final["status"] == "completed", final
        assert final["result"] == "charged"
        assert final["retries"] == 1
        assert final["error"] is None

        # The same key still names the same run.
        again = http.post(
            "/v1/runs",
            json={"function": "checkout", "input": None},
            headers={"Idempotency-Key": "checkout-7"},
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == run_id

        events = sse_events(http, run_id)
        retry_events = [e for e in events if e["event"] == "run.retried"]
        assert len(retry_events) == 1
        assert retry_events[0]["data"]["data"]["reason"] == "charge fixed"

        not_again = http.post(f"/v1/runs/{run_id}/retry", json={})
        assert not_again.status_code == 409
        assert not_again.json()["error"]["code"] == "run_not_retryable"
        assert "completed" in not_again.json()["error"]["message"]

    ran = [line.split()[1] for line in effects.read_text().splitlines() if line.startswith(run_id)]
    assert ran == ["reserve", "charge", "charge"]


def test_a_workflow_error_blocks_the_run_until_a_fixed_build_registers(cluster: Cluster) -> None:
    cluster.start()
    buggy = cluster.start_worker(VERSIONED, VERSIONED_CODE="buggy", TRINE_BUILD_ID="build-1")
    with cluster.client() as http:
        run = start_run(http, "importer", {"a": 1, "b": 2})
        blocked = wait_until(http, run["id"], status_is("blocked"))
        assert blocked["error"]["type"] == "KeyError"
        assert blocked["blocked_build_id"] == "build-1"
        traceback = blocked["error"]["traceback"]
        assert "versioned_worker.py" in traceback
        assert 'rows["missing"]' in traceback
        assert "/trine/_" not in traceback  # the user's frames, not the SDK's
        events = [e["event"] for e in sse_events(http, run["id"], limit=4)]
        assert "run.blocked" in events
        listed = http.get("/v1/runs", params={"status": "blocked"}).raise_for_status().json()
        assert [r["id"] for r in listed["runs"]] == [run["id"]]

        buggy.terminate()
        cluster.start_worker(VERSIONED, VERSIONED_CODE="fixed", TRINE_BUILD_ID="build-2")
        final = wait_run(http, run["id"])
    assert final["status"] == "completed", final
    assert final["result"] == 3
    assert final["retries"] == 1


def test_wrong_retries_moves_and_histories_get_clear_errors_and_change_nothing(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.start_worker(VERSIONED, VERSIONED_CODE="fixed", TRINE_BUILD_ID="build-1")
    with cluster.client() as http:
        done = start_run(http, "importer", {"a": 1})
        assert wait_run(http, done["id"])["status"] == "completed"
        waiting = start_run(http, "pinned_flow", None)
        wait_until(http, waiting["id"], waiting_for("signal"))
        before = http.get(f"/v1/runs/{waiting['id']}").json()

        for run_id in (done["id"], waiting["id"]):
            answer = http.post(f"/v1/runs/{run_id}/retry", json={})
            assert answer.status_code == 409
            assert answer.json()["error"]["code"] == "run_not_retryable"
        unknown = http.post("/v1/runs/01NOSUCHRUN0000000000000000/retry", json={})
        assert unknown.status_code == 404

        nowhere = http.post(f"/v1/runs/{waiting['id']}/move", json={"build_id": "build-zz"})
        assert nowhere.status_code == 409
        assert nowhere.json()["error"]["code"] == "unknown_build"
        assert "build-zz" in nowhere.json()["error"]["message"]
        empty = http.post(f"/v1/runs/{waiting['id']}/move", json={})
        assert empty.status_code == 400
        finished = http.post(f"/v1/runs/{done['id']}/move", json={"build_id": "build-1"})
        assert finished.status_code == 409
        assert finished.json()["error"]["code"] == "run_finished"

        after = http.get(f"/v1/runs/{waiting['id']}").json()
        assert after["build_id"] == before["build_id"] == "build-1"
        assert after["status"] == "suspended"
        assert http.get("/v1/runs/01NOSUCHRUN0000000000000000/history").status_code == 404
