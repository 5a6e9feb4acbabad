"""The coordinator's settings (top-level names, kept from before plugins owned their settings)."""

from __future__ import annotations

from trine_core import Setting

WORKER_ADDR = Setting(
    "worker_addr", "127.0.0.1:7481", "where workers connect to the coordinator (gRPC host:port)"
)
LEASE_TTL_MS = Setting(
    "lease_ttl_ms",
    30_000,
    "how long a run's lease lasts without renewal; a dead coordinator's runs return after it",
)
HEARTBEAT_INTERVAL_MS = Setting(
    "heartbeat_interval_ms",
    1_000,
    "how often workers heartbeat; a worker silent for 5 intervals is gone",
)
SETTINGS = (WORKER_ADDR, LEASE_TTL_MS, HEARTBEAT_INTERVAL_MS)
