"""A cap on the signals a run keeps (sent while no wait takes them), in count and in bytes.

A run that never waits for a signal keeps every one sent to it: in memory while it is active
(``RunState.signals``), in RocksDB until it ends. Unbounded, 200 signals of 1 MB cost the engine
+665 MB. :func:`check` refuses, before anything is appended, a signal that no wait takes when the
run already keeps ``max_kept_signals`` of them or the payload would take it past
``max_kept_signal_bytes``; a signal a pending wait takes is never refused (it is not kept).

The refusal is ``kept_signals_full`` (HTTP 409: the request is fine, the run's state refuses
it) with ``details.limit`` naming the setting, and the run's kept count and bytes: nothing is
appended, the sender may retry once the run took some. :func:`summary` is what the run's view
shows of them (``Run.kept_signals``, derived, never stored), so that a run filling up is seen
before it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trine_core import KeptSignalsFull
from trine_engine.config import EngineConfig
from trine_engine.settings import MAX_KEPT_SIGNAL_BYTES, MAX_KEPT_SIGNALS
from trine_proto.trine.v1 import KeptSignals

if TYPE_CHECKING:
    from trine_engine.run_state import RunState


@dataclass(frozen=True)
class KeptSignalLimits:
    count: int = EngineConfig.max_kept_signals
    bytes: int = EngineConfig.max_kept_signal_bytes

    @classmethod
    def of(cls, config: EngineConfig) -> KeptSignalLimits:
        return cls(config.max_kept_signals, config.max_kept_signal_bytes)


def kept(state: RunState) -> tuple[int, int]:
    """How many signals ``state`` keeps, and their payloads' bytes."""
    count = size = 0
    for signals in state.signals.values():
        count += len(signals)
        size += sum(len(payload) for _seq, payload in signals)
    return count, size


def summary(state: RunState) -> list[KeptSignals]:
    """Per signal name (sorted), how many signals ``state`` keeps and their payloads' bytes."""
    return [
        KeptSignals(name=name, count=len(signals), bytes=sum(len(p) for _seq, p in signals))
        for name, signals in sorted(state.signals.items())
        if signals
    ]


def check(state: RunState, name: str, payload: bytes, limits: KeptSignalLimits) -> None:
    """Raise KeptSignalsFull if keeping signal ``name`` would pass a cap (the caller knows that
    no wait takes it)."""
    count, size = kept(state)
    if count + 1 > limits.count:
        setting, limit = MAX_KEPT_SIGNALS.key, limits.count
        why = f"it keeps {count} signals no wait took (the limit, {setting})"
    elif size + len(payload) > limits.bytes:
        setting, limit = MAX_KEPT_SIGNAL_BYTES.key, limits.bytes
        why = (
            f"its {count} kept signals hold {size} bytes and {len(payload)} more would pass "
            f"{limits.bytes} ({setting})"
        )
    else:
        return
    raise KeptSignalsFull(
        f"run {state.id} does not wait for signal {name!r} and {why}: not sent",
        run_id=state.id,
        limit=setting,
        limit_value=limit,
        kept=count,
        kept_bytes=size,
    )
