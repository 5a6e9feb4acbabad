"""The engine's instruments (issue 11), in core's process registry; ``trine-metrics`` exports them.

Recorded on the event loop's thread only, where the state changes: runs created and ended (the
appliers), step attempts (the report's plan, once applied), the group commit (``PartitionLog``),
dispatch (``take_work``). Gauges of the engine's in-memory state are read at collection time
(:func:`watch`), which ``trine-metrics`` does on the event loop too. ``function`` is a registered
function's name (bounded by registrations); no label ever holds a run id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from trine_core.instruments import DURATION_BUCKETS, LATENCY_BUCKETS, REGISTRY, SIZE_BUCKETS
from trine_proto.trine.v1 import RunStatus

if TYPE_CHECKING:
    from trine_engine.ready_queue import ReadyQueues
    from trine_engine.run_state import RunState

RUNS_STARTED = REGISTRY.counter(
    "trine_runs_started_total",
    "Runs created, by function: started over the API, and child runs a workflow started.",
    ("function",),
)
RUNS_FINISHED = REGISTRY.counter(
    "trine_runs_finished_total",
    "Runs that ended, by function and final status (completed, failed, cancelled).",
    ("function", "status"),
)
RUNS_RETRIED = REGISTRY.counter(
    "trine_runs_retried_total",
    "Failed or blocked runs resumed from their journal, by function and whether a new build "
    "registering did it (automatic) or an operator.",
    ("function", "automatic"),
)
RUN_DURATION = REGISTRY.histogram(
    "trine_run_duration_seconds",
    "From a run's creation to its end (sleeps and waits included), by function.",
    ("function",),
    DURATION_BUCKETS,
)
STEP_ATTEMPTS = REGISTRY.counter(
    "trine_step_attempts_total",
    "Step attempts that ended (completed, or failed and retried, or failed for good), by the "
    "run's function.",
    ("function",),
)
STEP_RETRIES = REGISTRY.counter(
    "trine_step_retries_total",
    "Step attempts that failed and scheduled a retry of the run, by function.",
    ("function",),
)
STEP_FAILURES = REGISTRY.counter(
    "trine_step_failures_total",
    "Steps that failed for good (not retryable, or out of attempts): the workflow sees the "
    "error. By function.",
    ("function",),
)
STEP_DURATION = REGISTRY.histogram(
    "trine_step_duration_seconds",
    "A step attempt's duration as the worker reported it (start to result or error), by the "
    "run's function.",
    ("function",),
    DURATION_BUCKETS,
)
JOURNAL_APPEND = REGISTRY.histogram(
    "trine_journal_append_seconds",
    "From a record's append to its batch being durable: the wait for the group commit, its write "
    "and its WAL fsync.",
    (),
    LATENCY_BUCKETS,
)
JOURNAL_COMMIT = REGISTRY.histogram(
    "trine_journal_commit_seconds",
    "One group commit: from its RocksDB write (log segment, derived state, applied offset) to the "
    "end of the WAL fsync that made it durable.",
    (),
    LATENCY_BUCKETS,
)
JOURNAL_BATCH = REGISTRY.histogram(
    "trine_journal_batch_records",
    "Records per group commit (the count is the number of commits, the sum the records).",
    (),
    SIZE_BUCKETS,
)
DISPATCH_LATENCY = REGISTRY.histogram(
    "trine_dispatch_latency_seconds",
    "From a run being ready (queued for dispatch) to a take_work leasing it to a worker, by "
    "function.",
    ("function",),
    LATENCY_BUCKETS,
)
READY_QUEUE = REGISTRY.gauge(
    "trine_ready_queue_depth",
    "Runs waiting in the ready queues for a worker, by function (entries a cancellation or a "
    "lease made stale included until popped).",
    ("function",),
)
TIMERS_PENDING = REGISTRY.gauge(
    "trine_timers_pending",
    "Durable timers not yet due: sleeps, and signal waits with a timeout, of suspended runs.",
)
RUNS_ACTIVE = REGISTRY.gauge(
    "trine_runs_active",
    "Runs not final (pending, running, suspended or blocked), by function.",
    ("function",),
)
RUNS_SUSPENDED = REGISTRY.gauge(
    "trine_runs_suspended",
    "Runs suspended on a timer, a signal or children (holding no worker slot), by function.",
    ("function",),
)
RUNS_BLOCKED = REGISTRY.gauge(
    "trine_runs_blocked",
    "Runs held blocked by a workflow error until retried on fixed code, by function.",
    ("function",),
)


def watch(active: dict[str, RunState], queues: ReadyQueues) -> Callable[[], None]:
    """Read the gauges of one engine from its state at each collection; returns the function
    that stops it (at close)."""

    def by_function(states: Iterable[RunState]) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {}
        for state in states:
            key = (state.run.function,)
            counts[key] = counts.get(key, 0.0) + 1
        return counts

    def suspended() -> list[RunState]:
        return with_status(RunStatus.SUSPENDED)

    def with_status(status: RunStatus) -> list[RunState]:
        return [s for s in list(active.values()) if s.run.status == status]

    def timers() -> float:
        return float(sum(1 for s in suspended() for e in s.journal if e.pending and e.until_ms))

    removers = [
        READY_QUEUE.add_callback(lambda: {(f,): float(n) for f, n in queues.depths().items()}),
        TIMERS_PENDING.add_callback(timers),
        RUNS_ACTIVE.add_callback(lambda: by_function(list(active.values()))),
        RUNS_SUSPENDED.add_callback(lambda: by_function(suspended())),
        RUNS_BLOCKED.add_callback(lambda: by_function(with_status(RunStatus.BLOCKED))),
    ]

    def stop() -> None:
        for remove in removers:
            remove()

    return stop
