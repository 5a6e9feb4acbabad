"""The runs a worker has in flight, by lease id.

A lease id names one attempt of one run, so it is the key both for a cancellation notice (which
must reach that attempt's context, not a later one's) and for forgetting a run when its task
ends. The stream handling starts runs here and cancels them all when the stream goes; ``Worker``
counts them and cancels them on a second signal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import Executor

from trine_proto.trine.v1 import WorkItem

from . import _lag
from ._runner import FunctionDef, execute, make_context
from ._session import RunReporter, Session
from .context import Context
from .converter import Converter, PydanticConverter

log = logging.getLogger("trine.worker")


class InFlight:
    """Every run task executing now, with its context for cancellation notices.

    ``draining`` is set once the worker asked to stop: a dispatch the coordinator sent before it
    saw our ``Drain`` is then not started (its lease goes back with the stream).
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, Context] = {}
        self.draining = False
        self.executor: Executor | None = None  # the step threads, set by ``Worker.serve``
        self.converter: Converter = PydanticConverter()  # the worker's, set by ``Worker``
        self.build_id = ""  # the worker's build, set by ``Worker.serve``

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[asyncio.Task[None]]:
        """A snapshot: tasks leave the table as they end, also while the caller iterates."""
        return list(self._tasks.values())

    def start(
        self,
        item: WorkItem,
        session: Session,
        functions: Mapping[str, FunctionDef],
        max_payload_bytes: int,
    ) -> None:
        """Execute a dispatched work item as its own task, unless it cannot or must not run."""
        run, lease = item.run, item.lease
        if run is None or lease is None:
            log.error("dispatch without a run or a lease: %r", item)
            return
        if self.draining or session.closed:
            # The coordinator sent it before it saw our Drain; its lease goes back with the stream.
            log.debug(
                "not starting run %s: draining",
                run.id,
                extra={"run_id": run.id, "function": run.function},
            )
            return
        definition = functions.get(run.function)
        if definition is None:
            log.error(
                "dispatched run %s of %r, which this worker does not serve",
                run.id,
                run.function,
                extra={"run_id": run.id, "function": run.function},
            )
            return
        reporter = RunReporter(session, run.id, lease.id)
        ctx = make_context(
            definition,
            item,
            reporter,
            max_payload_bytes=max_payload_bytes,
            executor=self.executor,
            converter=self.converter,
        )
        task = asyncio.create_task(
            execute(
                definition,
                item,
                ctx,
                max_payload_bytes=max_payload_bytes,
                build_id=self.build_id,
            ),
            name=f"trine-run-{run.id}",
        )
        _lag.label(task, f"workflow {definition.name!r} (run {run.id}), outside any step")
        self._tasks[lease.id] = task
        self._contexts[lease.id] = ctx
        task.add_done_callback(lambda t: self._done(lease.id, run.id, run.function, t))

    def cancel_notice(self, lease_id: str) -> None:
        """The coordinator says this attempt's run is being cancelled: tell its workflow."""
        ctx = self._contexts.get(lease_id)
        if ctx is not None:
            ctx._runtime_log.info("the run is being cancelled")
            ctx.request_cancel()

    def _done(self, lease_id: str, run_id: str, function: str, task: asyncio.Task[None]) -> None:
        _lag.unlabel(task)
        if self._tasks.get(lease_id) is task:
            del self._tasks[lease_id]
            self._contexts.pop(lease_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "run %s crashed in the SDK",
                run_id,
                exc_info=exc,
                extra={"run_id": run_id, "function": function},
            )
