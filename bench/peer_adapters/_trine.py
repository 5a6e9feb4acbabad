"""trine as a system under the peer harness (``../shared/bench/peers``): start, stop, client.

The harness imports this from its own virtualenv; trine's processes run from the repository's
``.venv`` (``make setup``), started and measured by the harness like every peer: the runtime's
processes are its ``server`` role (one for ``all``; engine, coordinator and gateway for ``split``)
and ``examples/order_worker.py`` its ``worker``. The client starts each run with one HTTP request
(``POST /v1/runs?wait=60``, the run id as its ``Idempotency-Key``: at most once per id, as the
peers' workflows are keyed).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from bench.common import (  # the harness's package, on its PYTHONPATH
    HOST,
    http,
    require_free_ports,
    run_client,
    start_proc,
    stop_all,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
HTTP_PORT, WORKER_PORT, ENGINE_PORT, COORDINATOR_PORT = 7480, 7481, 7482, 7483
TARGETS = {"all": ("all",), "split": ("engine", "coordinator", "gateway")}


def versions(topology: str, wire: str = "grpc") -> dict[str, str]:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError as exc:
            return f"? ({exc})"

    return {
        "trine (git)": run("git", "-C", str(REPO), "describe", "--always", "--dirty"),
        "topology": topology,
        "worker wire": wire,
        "python": run(PYTHON, "--version"),
    }


def _env(ctx: Any, wire: str) -> dict[str, str]:
    return {
        "PYTHONPATH": "",  # trine's own virtualenv, not the harness's path
        "TRINE_DATA_DIR": os.path.join(ctx.data_dir, "trine-data"),
        "TRINE_HTTP_ADDR": f"{HOST}:{HTTP_PORT}",
        "TRINE_WORKER_ADDR": f"{wire}://{HOST}:{WORKER_PORT}",
        "TRINE_ENGINE_ADDR": f"{HOST}:{ENGINE_PORT}",
        "TRINE_COORDINATOR_ADDR": f"{HOST}:{COORDINATOR_PORT}",
        "TRINE_LOG_FORMAT": "json",
    }


def start(ctx: Any, topology: str, wire: str = "grpc") -> None:
    """Start ``topology``, its workers reaching the coordinator over ``wire`` (grpc, tcp)."""
    require_free_ports([HTTP_PORT, WORKER_PORT, ENGINE_PORT, COORDINATOR_PORT])
    env = _env(ctx, wire)
    for target in TARGETS[topology]:
        start_proc(
            ctx,
            f"trine-{target}",
            [PYTHON, "-m", "trine_core.cli", f"--target={target}"],
            role="server",
            env=env,
            cwd=str(REPO),
        )
    gateway = ctx.procs[f"trine-{TARGETS[topology][-1]}"]
    base = f"http://{HOST}:{HTTP_PORT}"
    wait_until(lambda: http("GET", f"{base}/healthz")[0] == 200, 60, "trine /healthz", gateway)
    worker = start_proc(
        ctx,
        "trine-worker",
        [PYTHON, str(REPO / "examples" / "order_worker.py")],
        role="worker",
        env=env,
        cwd=str(REPO),
    )

    def registered() -> bool:
        status, body = http("GET", f"{base}/v1/functions")
        return status == 200 and any(f["name"] == "order" for f in json.loads(body)["functions"])

    wait_until(registered, 60, "the order worker registered", worker)
    probe = {"order_id": "probe", "customer": "p", "items": [{"sku": "x", "qty": 1}], "amount": 1}
    status, body = http(
        "POST", f"{base}/v1/runs?wait=30", {"function": "order", "input": probe}, 40
    )
    if status not in (200, 201) or json.loads(body).get("status") != "completed":
        raise RuntimeError(f"trine's probe run failed: HTTP {status}: {body[:500]}")


def stop(ctx: Any) -> dict[str, int | None]:
    order = ["trine-worker", "trine-gateway", "trine-coordinator", "trine-engine", "trine-all"]
    return stop_all(ctx, [name for name in order if name in ctx.procs])


def run_workload(ctx: Any, module: str, phase: str) -> dict[str, Any]:
    return run_client(ctx, module, phase, {"url": f"http://{HOST}:{HTTP_PORT}"})


# -- client hooks (run inside the harness's separate client process) -------------------------------


async def client_open(cfg: dict[str, Any]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None)
    return {"session": aiohttp.ClientSession(connector=connector), "url": cfg["url"] + "/v1/runs"}


async def client_run(state: dict[str, Any], run_id: str, payload: dict[str, Any]) -> Any:
    body = {"function": "order", "input": payload}
    headers = {"Idempotency-Key": run_id}
    async with state["session"].post(
        state["url"], params={"wait": "60"}, json=body, headers=headers
    ) as response:
        run = await response.json(content_type=None)
        if response.status not in (200, 201) or run.get("status") != "completed":
            raise RuntimeError(f"HTTP {response.status}: {str(run)[:200]}")
        return run["result"]


async def client_close(state: dict[str, Any]) -> None:
    await state["session"].close()
