"""The routes of docs/versioning.md that :class:`trine.Client` has no method for yet: a run's
history, retry, move, the builds, and a newest-first listing of one status.

They go through the client's own request plumbing, so that their failures are the same
``trine.ClientError`` (and ``httpx`` transport errors) every other command turns into its exit
code. Once ``trine.Client`` gains these methods, the commands call them and this module goes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import trine


def _path(run_id: str, action: str) -> str:
    return f"/v1/runs/{quote(run_id, safe='')}/{action}"


async def history(client: trine.Client, run_id: str) -> dict[str, Any]:
    """``GET /v1/runs/{id}/history``: the run and its journal, format ``trine.history/1``."""
    return await client._json("GET", _path(run_id, "history"))


async def retry(client: trine.Client, run_id: str, reason: str = "") -> dict[str, Any]:
    """``POST /v1/runs/{id}/retry``: a failed or blocked run resumes; the run as it is now."""
    body = {"reason": reason} if reason else None
    return await client._json("POST", _path(run_id, "retry"), json=body)


async def move(client: trine.Client, run_id: str, build_id: str) -> dict[str, Any]:
    """``POST /v1/runs/{id}/move``: the run continues only on ``build_id``."""
    return await client._json("POST", _path(run_id, "move"), json={"build_id": build_id})


async def list_builds(client: trine.Client) -> dict[str, Any]:
    """``GET /v1/builds``: ``{"builds": [{"build_id", "functions", "open_runs", ...}]}``."""
    return await client._json("GET", "/v1/builds")


async def latest_runs(
    client: trine.Client, function: str, status: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` runs of ``function`` in ``status`` (one page: at most 1000)."""
    params = {"function": function, "status": status, "limit": limit, "newest_first": "true"}
    page = await client._json("GET", "/v1/runs", params=params)
    runs: list[dict[str, Any]] = page.get("runs") or []
    return runs
