"""``MemoryWorkerRegistry``: a ``WorkerRegistry`` whose workers a test makes come and go.

The reference a consumer's tests (the gateway's) use in place of a coordinator: it passes
:class:`~trine_core.testing.contracts.WorkerRegistryContract`, as the coordinator does. It is
also that suite's :class:`~trine_core.testing.contracts.Workers` for itself: ``connect``,
``dispatch``, ``step``, ``finish``, ``drain``, ``disconnect`` and ``heartbeat`` change what
``list_workers`` answers at once.

Hooks for tests: ``calls`` (every ``list_workers`` request, in order); ``fail_with`` (while set,
``list_workers`` raises it, after recording the call); ``clock`` (milliseconds: pass a fixed one
for stable times).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

from trine_core.errors import TrineError
from trine_proto.trine.v1 import ListWorkersRequest, ListWorkersResponse, RunInFlight, WorkerInfo
from trine_proto.vocabulary import now_ms

DEFAULT_MAX_RUNS = 100
"""Runs listed per worker when ``ListWorkersRequest.max_runs`` is 0."""
MAX_RUNS = 1000
"""Runs listed per worker at most, whatever the request asks."""


def max_runs(request: ListWorkersRequest) -> int:
    """How many runs per worker ``request`` lists: its ``max_runs``, 0 meaning the default of
    100, capped at 1000 (what every implementation of the contract does)."""
    return min(request.max_runs or DEFAULT_MAX_RUNS, MAX_RUNS)


@dataclasses.dataclass
class _Worker:
    info: WorkerInfo
    runs: dict[str, RunInFlight] = dataclasses.field(default_factory=dict)


class MemoryWorkerRegistry:
    """Workers held in memory, as one coordinator named ``coordinator`` would hold them."""

    def __init__(self, coordinator: str = "memory", *, clock: Callable[[], int] = now_ms) -> None:
        self.coordinator = coordinator
        self.clock = clock
        self.calls: list[ListWorkersRequest] = []
        self.fail_with: TrineError | None = None
        self._workers: dict[str, _Worker] = {}
        self._ids = itertools.count(1)

    # -- the contract ----------------------------------------------------------------------------

    async def list_workers(self, message: ListWorkersRequest) -> ListWorkersResponse:
        self.calls.append(message)
        if self.fail_with is not None:
            raise self.fail_with
        limit = max_runs(message)
        workers = []
        for worker_id in sorted(self._workers):
            worker = self._workers[worker_id]
            info = dataclasses.replace(worker.info)
            runs = list(worker.runs.values())
            info.in_flight = len(runs)
            info.free_slots = (
                0 if info.draining else max(0, max(1, info.max_concurrency) - len(runs))
            )
            info.runs = [dataclasses.replace(run) for run in runs[:limit]]
            workers.append(info)
        return ListWorkersResponse(workers=workers, coordinator=self.coordinator)

    # -- what workers do (the Workers of the contract suite) -------------------------------------

    async def connect(
        self,
        worker_id: str,
        functions: Sequence[str],
        max_concurrency: int,
        sdk_version: str = "",
        build_id: str = "",
    ) -> None:
        """The worker registers (again: a new session, its runs given back)."""
        now = self.clock()
        self._workers[worker_id] = _Worker(
            WorkerInfo(
                worker_id=worker_id,
                session_id=f"session-{next(self._ids)}",
                sdk_version=sdk_version,
                functions=list(functions),
                max_concurrency=max_concurrency,
                connected_at_ms=now,
                last_heartbeat_at_ms=now,
                coordinator=self.coordinator,
                build_id=build_id,
            )
        )

    async def dispatch(self, worker_id: str, function: str, run_id: str = "") -> str:
        """A run of ``function`` is dispatched to the worker; its id (a new one by default)."""
        run_id = run_id or f"run-{next(self._ids):06d}"
        worker = self._workers[worker_id]
        worker.runs[run_id] = RunInFlight(
            run_id=run_id, function=function, since_ms=self.clock(), attempt=1
        )
        return run_id

    async def step(self, worker_id: str, run_id: str, name: str) -> None:
        """The run reports the step ``name`` as started."""
        self._workers[worker_id].runs[run_id].step = name

    async def finish(self, worker_id: str, run_id: str) -> None:
        """The run ends (or suspends): its slot is free."""
        del self._workers[worker_id].runs[run_id]

    async def drain(self, worker_id: str) -> None:
        self._workers[worker_id].info.draining = True

    async def disconnect(self, worker_id: str) -> None:
        del self._workers[worker_id]

    async def heartbeat(self, worker_id: str) -> None:
        self._workers[worker_id].info.last_heartbeat_at_ms = self.clock()
