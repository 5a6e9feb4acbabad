"""Workers bound to their credential, and one live session per worker id (issue 13), in both
topologies, with real worker processes and the runtime started with a tokens file.

- A worker without a token is refused, says why in one ERROR line, and does not spin; once its
  token is added to the file and the coordinator gets SIGHUP, it gets in without a restart.
- A token limited to other functions cannot serve ``order``: refused, and ``order``'s settings
  stay those of the worker allowed to serve it; that worker serves ``order`` runs.
- Two workers with one explicit ``worker_id``: no flapping over 10 s (no fencing, one
  registration), and every run started meanwhile completes with each step executed once; a
  worker restarting after a crash gets its id back at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from harness import (
    EXAMPLES,
    Cluster,
    LogFile,
    Proc,
    side_effects,
    start_order,
    wait_run,
)

from trine_core.auth import hash_token, new_token

ADMIN = new_token()
WORKER = new_token()
OTHERS = new_token()
LATE = new_token()
ORDER_WORKER = str(EXAMPLES / "order_worker.py")
ROGUE_WORKER = "tests/workers/rogue_order_worker.py"
REFUSED = "refused worker"
"""What the SDK's one ERROR line about a refusal says."""


def write_tokens(path: Path, *extra: tuple[str, str, list[str], list[str] | None]) -> Path:
    """A tokens file: an admin token for the test's HTTP calls, a worker token for every
    function, one for ``other`` only, and ``extra`` entries."""
    entries = [
        ("admin", ADMIN, ["admin"], None),
        ("workers", WORKER, ["worker"], None),
        ("others", OTHERS, ["worker"], ["other"]),
        *extra,
    ]
    lines: list[str] = []
    for name, token, scopes, functions in entries:
        lines += ["[[tokens]]", f'name = "{name}"', f'sha256 = "{hash_token(token)}"']
        lines.append("scopes = [" + ", ".join(f'"{s}"' for s in scopes) + "]")
        if functions is not None:
            lines.append("functions = [" + ", ".join(f'"{f}"' for f in functions) + "]")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_secured(cluster: Cluster) -> Path:
    tokens = write_tokens(cluster.workdir / "tokens.toml")
    cluster.start(TRINE_AUTH_TOKENS_FILE=str(tokens))
    return tokens


def admin(cluster: Cluster) -> httpx.Client:
    """The gateway, as an operator: with a tokens file every route needs a token."""
    return httpx.Client(
        base_url=cluster.url, timeout=30.0, headers={"Authorization": f"Bearer {ADMIN}"}
    )


def coordinator(cluster: Cluster) -> Proc:
    return cluster.runtime_proc("coordinator" if cluster.topology == "split" else "all")


def coordinator_events(cluster: Cluster, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The coordinator's JSON log records of ``event`` whose fields match ``fields``."""
    return [
        record
        for record in coordinator(cluster).log.records()
        if record.get("event") == event
        and all(record.get(key) == value for key, value in fields.items())
    ]


def spawn_worker(cluster: Cluster, script: str, name: str, **env: str) -> Proc:
    """A worker process, not waited for (it may be refused)."""
    path = script if script.startswith("/") else str(Path(__file__).parents[1] / script)
    return cluster.spawn(name, [sys.executable, path], **env)


def refusals(log: LogFile) -> list[str]:
    return [line for line in log.lines() if REFUSED in line]


def test_a_worker_without_a_token_is_refused_says_why_once_and_does_not_spin(
    cluster: Cluster,
) -> None:
    tokens = start_secured(cluster)
    worker = spawn_worker(cluster, ORDER_WORKER, "tokenless")
    line = worker.log.wait_for(lambda text: REFUSED in text, worker.popen)
    assert "ERROR" in line
    assert "without a token" in line
    assert "(unauthenticated)" in line
    assert "TRINE_TOKEN" in line
    assert "'worker'" in line
    # Bounded retries: 1 s, then 2 s, then 4 s (each ±20%): over 4 s at most three attempts.
    first = coordinator_events(cluster, "worker refused", code="unauthenticated")
    assert len(first) >= 1
    time.sleep(4.0)  # the time that passes is what is measured
    attempts = coordinator_events(cluster, "worker refused", code="unauthenticated")
    assert 2 <= len(attempts) <= 4, attempts
    assert len(refusals(worker.log)) == 1, worker.log.tail()
    assert worker.alive  # still retrying
    worker.terminate()
    # A worker whose token is not in the file yet is refused too; once the token is added and
    # the coordinator gets SIGHUP, it gets in at its next attempt, without a restart.
    write_tokens(tokens, ("late", LATE, ["worker"], ["order"]))
    late = spawn_worker(cluster, ORDER_WORKER, "late", TRINE_TOKEN=LATE)
    late.log.wait_for(lambda text: REFUSED in text, late.popen)  # not in the file yet
    os.kill(coordinator(cluster).popen.pid, signal.SIGHUP)
    cluster.wait_registered(late)
    with admin(cluster) as http:
        run = wait_run(http, start_order(http))
    assert run["status"] == "completed", run
    assert len(refusals(late.log)) == 1


def test_a_token_for_other_functions_cannot_serve_order_nor_change_its_settings(
    cluster: Cluster,
) -> None:
    start_secured(cluster)
    served = cluster.start_worker("order_worker.py", TRINE_TOKEN=WORKER)
    registered = coordinator_events(cluster, "worker registered", token="workers")
    assert [event["functions"] for event in registered] == [["order"]]
    with admin(cluster) as http:
        before = http.get("/v1/functions").raise_for_status().json()["functions"]
        [order_before] = [f for f in before if f["name"] == "order"]
        rogue = spawn_worker(cluster, ROGUE_WORKER, "rogue", TRINE_TOKEN=OTHERS)
        line = rogue.log.wait_for(lambda text: REFUSED in text, rogue.popen)
        assert "(permission_denied)" in line
        assert "token 'others' may not serve order" in line
        assert coordinator_events(cluster, "worker refused", token="others")
        after = http.get("/v1/functions").raise_for_status().json()["functions"]
        assert [f for f in after if f["name"] == "order"] == [order_before]
        assert order_before["build_id"] != "rogue"
        # The worker allowed to serve it serves it, under its own settings (no 1 ms timeout).
        runs = [start_order(http, order_id=f"o-{i}") for i in range(5)]
        finished = [wait_run(http, run_id) for run_id in runs]
    assert {run["status"] for run in finished} == {"completed"}, finished
    assert all(run["result"]["status"] == "completed" for run in finished)
    assert served.alive
    assert not coordinator_events(cluster, "worker registered", token="others")


def test_two_workers_with_one_id_do_not_flap_and_runs_complete_once(cluster: Cluster) -> None:
    start_secured(cluster)
    effects = cluster.workdir / "effects.log"
    env = {"TRINE_TOKEN": WORKER, "TRINE_WORKER_ID": "twin", "ORDER_SIDE_EFFECT_LOG": str(effects)}
    first = cluster.start_worker("order_worker.py", **env)
    second = spawn_worker(cluster, ORDER_WORKER, "twin-2", **env)
    line = second.log.wait_for(lambda text: REFUSED in text, second.popen)
    assert "(worker_id_in_use)" in line
    assert "worker_id 'twin'" in line
    assert "its own worker_id" in line
    with admin(cluster) as http:
        runs = []
        window_ends = time.monotonic() + 10.0
        while time.monotonic() < window_ends:  # a run every half second, over 10 s
            runs.append(start_order(http, order_id=f"o-{len(runs)}"))
            time.sleep(0.5)
        finished = [wait_run(http, run_id) for run_id in runs]
    assert len(coordinator_events(cluster, "worker fenced", worker_id="twin")) <= 1
    assert len(coordinator_events(cluster, "worker registered", worker_id="twin")) == 1
    refused = coordinator_events(cluster, "worker refused", worker_id="twin")
    assert 1 <= len(refused) <= 5, refused  # 1 s, 2 s, 4 s, 8 s apart: a handful in 10 s
    assert len(refusals(second.log)) == 1
    assert {run["status"] for run in finished} == {"completed"}, finished
    executed = Counter(
        (run_id, step) for kind, run_id, step in side_effects(effects) if kind == "exec"
    )
    assert sorted(executed) == sorted((r, s) for r in runs for s in ("validate", "charge", "ship"))
    assert set(executed.values()) == {1}, executed  # each step of each run executed once
    # The first one crashes and restarts: its old connection is gone, so it gets in at once.
    second.terminate()
    first.kill9()
    started = time.monotonic()
    restarted = cluster.start_worker("order_worker.py", **env)
    assert time.monotonic() - started < 10.0
    ended = coordinator_events(cluster, "worker disconnected", worker_id="twin")
    assert ended
    assert not ended[0]["reason"].startswith("no heartbeat"), ended[0]
    with admin(cluster) as http:
        assert wait_run(http, start_order(http, order_id="after"))["status"] == "completed"
    assert restarted.alive
