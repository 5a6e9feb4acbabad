"""The engine's settings, and how they become an :class:`EngineConfig`."""

from __future__ import annotations

import math
from pathlib import Path

from trine_core import MAX_PAYLOAD_BYTES, ConfigError, Setting, Settings
from trine_engine.config import EngineConfig
from trine_engine.retention import DEFAULT_RETENTION, parse_retention

DATA_DIR = Setting("data_dir", Path(".trine/data"), "where the engine keeps its RocksDB database")
ENGINE_ADDR = Setting(
    "engine_addr",
    "127.0.0.1:7482",
    "the engine's gRPC address in a split deployment: it serves Backend and Dispatcher there, "
    "and the other processes dial it",
)
FINISHED_CACHE_SIZE = Setting(
    "finished_cache_size",
    EngineConfig.finished_cache_size,
    "how many finished runs the engine keeps in memory",
    section="engine",
)
RUN_CACHE_BYTES = Setting(
    "run_cache_bytes",
    EngineConfig.run_cache_bytes,
    "about how many bytes of payloads (inputs, results, step outputs, event data) the finished "
    "runs kept in memory may hold; the least recently read go first (finished_cache_size also "
    "applies)",
    section="engine",
)
CANCEL_GRACE_MS = Setting(
    "cancel_grace_ms",
    EngineConfig.cancel_grace_ms,
    "how long a cancelled run may clean up before it is forced to cancelled",
    section="engine",
)
MAX_LEASE_TTL_MS = Setting(
    "max_lease_ttl_ms",
    EngineConfig.max_lease_ttl_ms,
    "the longest lease the engine grants or renews, whoever asks: a longer lease_ttl_ms in a "
    "take_work or renew_leases is clamped to it (not refused); keep it above the coordinator's "
    "lease_ttl_ms",
    section="engine",
)
RETENTION = Setting(
    "retention",
    DEFAULT_RETENTION,
    "how long after it ended a finished run is deleted, with its journal, events, kept signals "
    "and idempotency key (90s, 12h, 7d; 0 or off: never); the log is trimmed to about as much "
    "history",
)
MAX_KEPT_SIGNALS = Setting(
    "max_kept_signals",
    EngineConfig.max_kept_signals,
    "signals a run may keep while no wait takes them: one more is refused (409 "
    "kept_signals_full, details.limit = engine.max_kept_signals)",
    section="engine",
)
MAX_KEPT_SIGNAL_BYTES = Setting(
    "max_kept_signal_bytes",
    EngineConfig.max_kept_signal_bytes,
    "bytes of payload a run may keep in signals no wait took: a signal past it is refused (409 "
    "kept_signals_full, details.limit = engine.max_kept_signal_bytes)",
    section="engine",
)
WRITE_FAILURE_EXIT_S = Setting(
    "write_failure_exit_s",
    EngineConfig.write_failure_exit_s,
    "after a write to the data dir failed (a full disk, an I/O error), how long the engine keeps "
    "serving reads (changes get 503 storage_error) before its process exits with status 1 for "
    "a supervisor to restart it",
    section="engine",
)
SETTINGS = (
    DATA_DIR,
    ENGINE_ADDR,
    FINISHED_CACHE_SIZE,
    RUN_CACHE_BYTES,
    CANCEL_GRACE_MS,
    MAX_LEASE_TTL_MS,
    RETENTION,
    MAX_KEPT_SIGNALS,
    MAX_KEPT_SIGNAL_BYTES,
    WRITE_FAILURE_EXIT_S,
)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        data_dir=settings[DATA_DIR],
        max_payload_bytes=settings[MAX_PAYLOAD_BYTES],
        finished_cache_size=settings[FINISHED_CACHE_SIZE],
        run_cache_bytes=settings[RUN_CACHE_BYTES],
        cancel_grace_ms=settings[CANCEL_GRACE_MS],
        max_lease_ttl_ms=settings[MAX_LEASE_TTL_MS],
        retention_ms=parse_retention(
            settings[RETENTION], f"{RETENTION.key} ({RETENTION.flag}, {RETENTION.env})"
        ),
        max_kept_signals=settings[MAX_KEPT_SIGNALS],
        max_kept_signal_bytes=settings[MAX_KEPT_SIGNAL_BYTES],
        write_failure_exit_s=_seconds(settings[WRITE_FAILURE_EXIT_S], WRITE_FAILURE_EXIT_S),
    )


def _seconds(value: float, setting: Setting[float]) -> float:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"{setting.key} ({setting.flag}, {setting.env}) must be a number of seconds >= 0, "
            f"not {value!r}"
        )
    return value
