"""``replay(worker, history)``: check that the worker's code can continue the runs of exported
histories, before it is deployed (docs/versioning.md, "Replay checks: histories").

The check runs the history's workflow function on the worker's own replay machinery (the same
journal cursor, ``ctx`` calls and ending rules as a dispatched run), so it agrees with what a
worker would do with the run; only the journal's end differs (``_history.HistoryJournal``): no
step runs, nothing is sent, no runtime is needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, cast

from trine_proto.trine.v1 import ReportAck, ReportOutcome, ReportResponse

from .._ending import run_workflow
from .._history import History, HistoryJournal, HistorySource, load
from .._runner import FunctionDef
from .._session import RunReporter, Session
from ..context import Context
from ..errors import NonDeterminismError
from ..transport import CoordinatorStream
from ..worker import Worker

log = logging.getLogger("trine.replay")


def replay(worker: Worker, history: HistorySource | Sequence[HistorySource]) -> None:
    """Replay ``history`` against ``worker``'s code; raise at the first disagreement.

    ``history`` is an exported history (``GET /v1/runs/{id}/history``, format
    ``trine.history/1``): its dict, its JSON text (``str`` or ``bytes``), a path to its JSON
    file, or a list of any of these. Each is replayed with the workflow function ``worker``
    serves under the history's function name: every call the code makes must be the one its
    journal recorded at that position (steps never run; their recorded outputs and errors are
    returned), else ``trine.NonDeterminismError`` names the position and both calls, with a note
    naming the run. Past the end of a finished run's journal the code takes the old path of
    every ``ctx.patched``; a completed run's code must then return, without any further call.

    Raises ``ValueError`` for a history of an unknown format or of a function ``worker`` does
    not serve (checked for every history before any is replayed). Callable from synchronous
    code and from a running event loop alike (the replay then runs in a thread of its own).
    """
    histories = load(history)
    work: list[tuple[History, FunctionDef]] = []
    functions = worker.functions
    for item in histories:
        definition = functions.get(item.function)
        if definition is None:
            served = ", ".join(repr(name) for name in functions) or "none"
            raise ValueError(
                f"{item.source} is a run of the function {item.function!r}, which this worker "
                f"does not serve (it serves {served})"
            )
        work.append((item, definition))
    for item, definition in work:
        _run(_replay_one(worker, definition, item))


async def _replay_one(worker: Worker, definition: FunctionDef, history: History) -> None:
    journal = HistoryJournal(history)
    ctx = Context(
        run_id=history.run_id,
        function=definition.name,
        attempt=history.attempt,
        journal=journal,
        step_attempts={},
        reporter=_Offline(history.run_id),
        max_payload_bytes=worker.max_payload_bytes,
        logger=log,
        converter=worker.converter,
    )
    ending = await run_workflow(
        definition, history.input, ctx, max_payload_bytes=worker.max_payload_bytes
    )
    fatal = ctx._state.fatal_error
    if fatal is not None:
        fatal.add_note(f"replaying {history.source} of {definition.name!r}")
        raise fatal
    if history.status != "completed" or ending.ended is not None or ending.error is None:
        return
    # The run completed, and this code raises (or cannot return its result) instead.
    error = ending.error
    raised = f"{error.type}: {error.message}"
    mismatch = NonDeterminismError(journal.position, "the run's end (it returned)", raised)
    mismatch.args = (
        f"non-deterministic workflow: the run completed at journal position {journal.position}, "
        f"but this execution raises {raised} there. The code must end a completed run's history "
        "as that run ended: it returned",
    )
    mismatch.add_note(f"replaying {history.source} of {definition.name!r}")
    raise mismatch from ending.exception


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end, here, or in a thread when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trine-replay") as pool:
        pool.submit(asyncio.run, coroutine).result()


class _Offline(RunReporter):
    """A replay's reporter: nothing is sent anywhere. A replay never reaches a report (every
    call is answered by the journal or ends the replay), so this only acknowledges."""

    def __init__(self, run_id: str) -> None:
        super().__init__(Session(cast(CoordinatorStream, None)), run_id, "replay")

    def send(self, *commands: Any) -> asyncio.Future[ReportAck]:
        future: asyncio.Future[ReportAck] = asyncio.get_running_loop().create_future()
        response = ReportResponse(outcome=ReportOutcome.CONTINUE)
        future.set_result(ReportAck(response=response))
        return future
