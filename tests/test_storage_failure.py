"""A full disk (issue 14): the engine's data dir lives on a small tmpfs the test mounts (root
only; skipped elsewhere). Runs complete, then the disk is filled to the last byte. The next change
answers 503 ``storage_error`` with a generic message (no path); reads are still served; the
engine's process (``--target=all``, or the engine process of ``split``) exits with status 1 and
one ``trine: error:`` line after ``[engine] write_failure_exit_s``; restarted once space is freed,
every acknowledged run is there and the runs in flight complete."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import (
    ORDER,
    Cluster,
    send_signal,
    start_order,
    start_run,
    wait_run,
    wait_until,
    waiting_for,
)

EXIT_AFTER_S = "2"
ENV = {"TRINE_ENGINE_WRITE_FAILURE_EXIT_S": EXIT_AFTER_S}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until ``disk`` has not one byte left; return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, bytes(size))
    finally:
        os.close(fd)
    return filler


def start_until_refused(http: httpx.Client, tries: int = 200) -> tuple[list[str], httpx.Response]:
    """Start runs until one is refused: the ids of those acknowledged, and the refusal."""
    acknowledged: list[str] = []
    for n in range(tries):
        answer = http.post(
            "/v1/runs", json={"function": "order", "input": {**ORDER, "order_id": f"late-{n}"}}
        )
        if answer.status_code != 201:
            return acknowledged, answer
        acknowledged.append(answer.json()["id"])
    raise AssertionError(f"{tries} starts on a full disk were all acknowledged")


def test_a_full_disk_refuses_changes_serves_reads_exits_and_loses_nothing(
    cluster: Cluster, small_disk: Path
) -> None:
    cluster.data_dir = small_disk / "data"
    cluster.start(**ENV)
    workers = [cluster.start_worker(), cluster.start_worker("approval_worker.py")]
    engine = cluster.runtime_proc("all" if cluster.topology == "all" else "engine")
    with cluster.client() as http:
        done = [start_order(http, order_id=f"o-{n}") for n in range(5)]
        for run_id in done:
            assert wait_run(http, run_id)["status"] == "completed"
        approval = start_run(http, "approval", {"request": "r-1", "sleep_s": 0})["id"]
        wait_until(http, approval, waiting_for("signal"))

        filler = fill(small_disk)
        acknowledged, refused = start_until_refused(http)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "storage_error"
        assert "accepts no more changes" in error["message"]
        assert str(small_disk) not in refused.text  # paths go to the log only
        assert "No space left" not in refused.text

        # A signal is refused too, and the run still waits for it: reads show what is durable,
        # not what the failed write would have changed.
        refused_signal = send_signal(http, approval, "approve", {"by": "lost"})
        assert refused_signal.status_code == 503, refused_signal.text
        assert [w["name"] for w in http.get(f"/v1/runs/{approval}").json()["waiting"]] == [
            "approve"
        ]
        journal = http.get(f"/v1/runs/{approval}/journal").raise_for_status().json()
        assert "lost" not in str(journal)

        # Reads are served while the engine waits to exit.
        for run_id in done:
            run = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
            assert run["status"] == "completed"
        listed = {run["id"] for run in http.get("/v1/runs").raise_for_status().json()["runs"]}
        assert set(done) <= listed
        if cluster.topology == "all":  # the engine role is not ready (a split gateway's is)
            assert http.get("/healthz").status_code == 503

    assert engine.popen.wait(timeout=30) == 1
    lines = engine.log.lines()
    assert lines[-1].startswith("trine: error: the engine stopped after a failed write"), lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert any('"log write failed' in line and "No space left" in line for line in lines)

    for worker in workers:  # the engine's failure is no run's failure
        assert not [line for line in worker.log.lines() if "run failed" in line]

    filler.unlink()
    cluster.restart(engine.name.removeprefix("trine-"), **ENV)
    with cluster.client() as http:
        for run_id in done:
            assert wait_run(http, run_id)["status"] == "completed"
        for run_id in acknowledged:  # acknowledged before the refusal: run to their end
            assert wait_run(http, run_id)["status"] == "completed"
        wait_until(http, approval, waiting_for("signal"))
        assert send_signal(http, approval, "approve", {"by": "ada"}).status_code == 202
        assert wait_run(http, approval)["result"]["approval"] == {"by": "ada"}
        listed = http.get("/v1/runs", params={"limit": 1000}).raise_for_status().json()["runs"]
        assert len(listed) == len(done) + len(acknowledged) + 1  # no refused start is there
