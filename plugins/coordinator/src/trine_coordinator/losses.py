"""Runs whose worker was lost, counted, so that no run is dispatched again in a loop.

A worker is *lost* when its session ends while the worker did not ask to go (no drain) and the
coordinator is not stopping: it missed its heartbeat deadline, its stream broke, or it registered
again. Its runs are given back to the engine and dispatched again at once, which is right after a
crash. But the run itself can be the cause: an async step that blocks the worker's event loop for
longer than the heartbeat deadline gets its worker dropped on every attempt (the step runs again
each time, forever), and a step that kills its process (out of memory, a crash in an extension)
takes down every worker it is given to.

So each loss is counted per run, with the journal length the lost attempt was dispatched with.
Progress (a longer journal when the run is dispatched next) starts the count over; a run that is
dispatched with ``limit`` consecutive losses behind it is failed with ``WorkerLost`` instead of
being sent to a worker.

In memory, as leases are: a coordinator that restarts forgets the counts, and the table keeps at
most ``capacity`` runs (the oldest go first: a run lost and then taken by another coordinator
never comes back here).
"""

from __future__ import annotations

from dataclasses import dataclass

from trine_proto.trine.v1 import ErrorInfo
from trine_proto.vocabulary import ErrorType


@dataclass(slots=True)
class Loss:
    """The consecutive losses of one run's workers, the last one described."""

    count: int
    journal_length: int
    """The journal length the lost attempts were dispatched with (no progress in between)."""
    worker_id: str
    reason: str
    step: str
    """The step the last lost attempt had reported as started and not finished ("" if none)."""

    def describe(self) -> str:
        where = f" in step {self.step!r}" if self.step else ""
        return f"worker {self.worker_id}{where}: {self.reason}"


class Losses:
    def __init__(self, limit: int, capacity: int = 10_000) -> None:
        self.limit = limit
        """A run dispatched with this many consecutive losses fails; 0 or less: never."""
        self.capacity = capacity
        self._runs: dict[str, Loss] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> Loss | None:
        return self._runs.get(run_id)

    def lost(
        self, run_id: str, journal_length: int, worker_id: str, reason: str, step: str
    ) -> Loss:
        """An attempt of ``run_id``, dispatched with ``journal_length`` entries, lost its worker."""
        previous = self._runs.pop(run_id, None)
        in_a_row = previous is not None and previous.journal_length == journal_length
        count = previous.count + 1 if previous is not None and in_a_row else 1
        loss = Loss(count, journal_length, worker_id, reason, step)
        self._runs[run_id] = loss  # popped and put back: the newest is last, for the cap
        while len(self._runs) > self.capacity:
            del self._runs[next(iter(self._runs))]
        return loss

    def exhausted(self, run_id: str, journal_length: int) -> Loss | None:
        """``run_id`` is being dispatched with ``journal_length`` entries: its losses if they
        reached the limit without progress (fail it, do not dispatch it); None to dispatch it.
        Progress since the last loss forgets the losses."""
        loss = self._runs.get(run_id)
        if loss is None:
            return None
        if journal_length > loss.journal_length:
            del self._runs[run_id]
            return None
        if self.limit > 0 and loss.count >= self.limit:
            return loss
        return None

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def failure(self, run_id: str, loss: Loss) -> ErrorInfo:
        """The error a run whose workers kept being lost fails with."""
        return ErrorInfo(
            type=ErrorType.WORKER_LOST,
            message=(
                f"run {run_id} was not dispatched again: its worker was lost {loss.count} times "
                f"in a row with no progress in between (the last: {loss.describe()}). A step "
                "that blocks the worker's event loop stops its heartbeats (make a blocking step a "
                "sync function: it runs in a thread), and one that crashes the worker process "
                "takes down every worker it runs on. The limit is [coordinator] "
                "max_worker_losses."
            ),
            retryable=False,
        )
