"""A data dir written by --target=all opens with --target=engine and back, runs in flight too."""

from __future__ import annotations

from pathlib import Path

from harness import Cluster, LogFile, start_order, wait_run


def start(cluster: Cluster, n: int) -> list[str]:
    with cluster.client() as http:
        return [start_order(http) for _ in range(n)]


def test_all_to_split_to_all_keeps_in_flight_runs(tmp_path: Path) -> None:
    one = Cluster(topology="all", workdir=tmp_path / "all")
    split = Cluster(topology="split", workdir=tmp_path / "split")
    again = Cluster(topology="all", workdir=tmp_path / "again")
    for c in (one, split, again):
        c.workdir.mkdir()
    split.data_dir = again.data_dir = one.data_dir
    try:
        # --target=all: some runs finish, some are mid-step when it dies, some never started.
        one.start()
        effects = one.workdir / "effects.log"
        worker = one.start_worker(ORDER_SIDE_EFFECT_LOG=str(effects), ORDER_STEP_DELAY_S="0.5")
        done = start(one, 1)
        with one.client() as http:
            assert wait_run(http, done[0])["status"] == "completed"
        running = start(one, 3)
        LogFile(effects).wait_for(lambda line: line.startswith("exec") and running[0] in line)
        worker.kill9()
        pending = start(one, 3)
        one.kill9_runtime()

        # --target=engine + coordinator + gateway on the same data dir: everything completes.
        split.start()
        split.start_worker()
        with split.client() as http:
            for run_id in done + running + pending:
                assert wait_run(http, run_id)["status"] == "completed", run_id
            journal = http.get(f"/v1/runs/{running[0]}/journal").json()["entries"]
            assert [e["name"] for e in journal] == ["validate", "charge", "ship"]
        more = start(split, 2)
        split.close()  # kill -9 every process, with these two maybe in flight

        # Back to --target=all: what split wrote reads back, and new work runs.
        again.start()
        again.start_worker()
        with again.client() as http:
            for run_id in more + start(again, 1):
                assert wait_run(http, run_id)["status"] == "completed", run_id
            listed = http.get("/v1/runs", params={"limit": 100}).json()["runs"]
            assert len(listed) == 1 + 3 + 3 + 2 + 1
    finally:
        for c in (one, split, again):
            c.close()
