"""Read-only views of the engine's in-memory state, for tests and operators: what a run looks like
inside the engine (ahead of what readers see), and the engine's counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from trine_engine.leases import Lease
from trine_engine.run_state import RunState
from trine_proto.trine.v1 import Event, JournalEntry, Run


@dataclasses.dataclass(frozen=True, slots=True)
class RunSnapshot:
    run: Run
    """The run as the engine holds it, changes not yet durable included."""
    durable_run: Run | None
    """The run as readers see it (None until its creation is durable)."""
    journal: tuple[JournalEntry, ...]
    durable_journal: int
    """How many journal entries are durable."""
    events: tuple[Event, ...]
    durable_seq: int
    """Events up to this seq are durable; subscribers see no others."""
    active: bool
    """Not final yet, or final but its end not yet durable."""
    lease: Lease | None
    """The live lease (a copy), if a worker holds the run."""
    queued: bool
    """In a ready queue, waiting for ``take_work``."""
    step_attempts: Mapping[int, int]
    """Failed attempts by step index: what the next dispatch carries."""
    signals: Mapping[str, tuple[bytes, ...]]
    """Signals received before the run waited for them, oldest first, by name."""

    @classmethod
    def of(cls, state: RunState, active: bool) -> RunSnapshot:
        return cls(
            run=state.run,
            durable_run=state.durable_run,
            journal=tuple(state.journal),
            durable_journal=state.durable_journal,
            events=tuple(state.events),
            durable_seq=state.durable_seq,
            active=active,
            lease=dataclasses.replace(state.lease) if state.lease else None,
            queued=state.queued,
            step_attempts=MappingProxyType(dict(state.step_attempts)),
            signals=MappingProxyType(
                {
                    name: tuple(payload for _seq, payload in kept)
                    for name, kept in state.signals.items()
                }
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class EngineStats:
    active_runs: int
    blocked_runs: int
    """Runs held blocked by a workflow error (among the active ones)."""
    finished_runs_cached: int
    leases: int
    queued: int
    """Ready-queue entries (stale ones included: they are dropped when popped)."""
    take_work_waiters: int
    timers: int
    """Timers set and not fired yet (those whose reason went away included)."""
    next_offset: int
    """The offset the next record appended gets."""
    batches: int
    """Group commits written since open."""
    records: int
    """Records written since open."""
    append_p50_ms: float
    """From append to durable, over the recent window."""
    append_p99_ms: float
    commit_p50_ms: float
    """One synced write, over the recent window."""
    commit_p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
