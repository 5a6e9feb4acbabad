"""What the engine is configured with: plain values, so the engine and its tests depend on no
settings machinery (the role plugin builds one from the runtime's settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    data_dir: Path
    """The RocksDB database (created if missing)."""
    max_payload_bytes: int = 1 << 20
    """Largest run input, step output, result, event or signal payload accepted."""
    lease_ttl_ms: int = 30_000
    """A lease's time to live when ``take_work`` or ``renew_leases`` asks for none."""
    max_lease_ttl_ms: int = 600_000
    """The longest lease a ``take_work`` or ``renew_leases`` gets, whatever it asks: a caller
    asking for more (a lease of 2^32-1 ms held a run hostage, issue 13) gets this."""
    finished_cache_size: int = 10_000
    """How many finished runs stay in memory (the non-final ones always do)."""
    run_cache_bytes: int = 256 << 20
    """About how many bytes of payloads the finished runs in memory may hold (``footprint``)."""
    cancel_grace_ms: int = 30_000
    """How long a cancelled run may clean up before it is forced to ``cancelled``."""
    retention_ms: int = 7 * 86_400_000
    """How long after it ended a finished run is deleted (0: never); see ``retention``."""
    max_kept_signals: int = 1_000
    """Signals a run may keep while no wait takes them (``kept_signals``)."""
    max_kept_signal_bytes: int = 64 << 20
    """Bytes of payload a run may keep in signals no wait took (``kept_signals``)."""
    write_failure_exit_s: float = 10.0
    """After a failed write, how long the engine role serves reads before it stops its process
    (``RoleContext.fail``) for a supervisor to restart it; the engine itself never exits."""
