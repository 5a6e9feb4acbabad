"""The peer harness's adapter for trine split into engine, coordinator and gateway processes,
workers over tcp://; see _trine.py."""

from __future__ import annotations

from typing import Any

from peer_adapters import _trine
from peer_adapters._trine import client_close, client_open, client_run

NAME = "trine_split_tcp"
__all__ = ["client_close", "client_open", "client_run"]


def versions(ctx: Any = None) -> dict[str, str]:
    return _trine.versions("split", "tcp")


def start(ctx: Any) -> None:
    _trine.start(ctx, "split", "tcp")


def stop(ctx: Any) -> dict[str, int | None]:
    return _trine.stop(ctx)


def run_workload(ctx: Any, phase: str) -> dict[str, Any]:
    return _trine.run_workload(ctx, __name__, phase)
