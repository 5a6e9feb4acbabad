"""``trine replay --worker module:attr``: before a deploy, replay the latest finished runs of a
live runtime against the local code of a worker (docs/versioning.md, "Replay checks").

For each function the worker serves (or each ``--function``), the newest ``--last`` runs that
completed or failed are read as histories (``GET /v1/runs/{id}/history``) and replayed with
``trine.testing.replay``: a run the code cannot continue is a ``NonDeterminismError`` naming the
position and both calls. One line per run: ``ok <run> <function>`` or ``FAIL <run> <function>:
<message>`` (a message of several lines goes on, indented, below it).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trine

FINISHED = ("completed", "failed")
"""The runs replayed: a run that has ended (a cancelled one may have stopped anywhere)."""
DEFAULT_LAST = 20


class WorkerNotFound(Exception):
    """``--worker`` does not name a ``trine.Worker`` that can be imported (a usage error)."""


def load_worker(spec: str) -> trine.Worker:
    """``module:attr`` (``attr`` may be dotted) as the ``trine.Worker`` it names, imported with
    the current directory on the path, as ``python -m`` would."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkerNotFound(
            f"--worker {spec!r}: expected module:attribute, e.g. app.workers:worker"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkerNotFound(f"--worker {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself fails: say where, not a traceback of ours
        raise WorkerNotFound(
            f"--worker {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    found: Any = module
    for name in attr.split("."):
        if not hasattr(found, name):
            raise WorkerNotFound(f"--worker {spec!r}: {module_name!r} has no attribute {attr!r}")
        found = getattr(found, name)
    if not isinstance(found, trine.Worker):
        what = type(found).__name__
        raise WorkerNotFound(f"--worker {spec!r} is a {what}, not a trine.Worker")
    return found


def functions_to_check(worker: trine.Worker, chosen: Sequence[str] | None) -> list[str]:
    """The functions asked for (each one the worker serves), else every one it serves."""
    served = sorted(worker.functions)
    if not chosen:
        return served
    unknown = [name for name in chosen if name not in worker.functions]
    if unknown:
        raise WorkerNotFound(
            f"--function {', '.join(map(repr, unknown))}: the worker does not serve it "
            f"(it serves {', '.join(map(repr, served)) or 'nothing'})"
        )
    return list(dict.fromkeys(chosen))


async def latest_finished(client: trine.Client, function: str, last: int) -> list[dict[str, Any]]:
    """The newest ``last`` runs of ``function`` that completed or failed, newest first."""
    pages = await asyncio.gather(
        *(
            client.list_runs(function=function, status=status, limit=last, newest_first=True)
            for status in FINISHED
        )
    )
    runs = [run for page in pages for run in page.get("runs") or []]
    runs.sort(key=lambda run: (str(run.get("created_at")), str(run.get("id"))), reverse=True)
    return runs[:last]


@dataclass
class Outcome:
    run_id: str
    function: str
    problem: str | None
    """None: the code replays the run."""

    def lines(self) -> list[str]:
        if self.problem is None:
            return [f"ok {self.run_id} {self.function}"]
        first, *rest = self.problem.strip().splitlines() or [""]
        return [f"FAIL {self.run_id} {self.function}: {first}", *(f"    {r}" for r in rest)]


def check(worker: trine.Worker, history: dict[str, Any]) -> str | None:
    """Replay one history; what is wrong, or None. ``trine.testing`` is imported here, on first
    use: it is only this command's."""
    from trine.testing import replay

    try:
        replay(worker, history)
    except trine.NonDeterminismError as exc:
        return str(exc)
    except ValueError as exc:  # an unknown format, a function the worker does not serve
        return str(exc)
    except Exception as exc:  # the check itself broke: a failure to report, not a traceback
        return f"the replay raised {type(exc).__name__}: {exc}"
    return None


async def replay_runs(
    client: trine.Client,
    worker: trine.Worker,
    functions: Iterable[str],
    last: int,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Replay the latest finished runs of each function, reporting each as it is checked."""
    outcomes = []
    for function in functions:
        for run in await latest_finished(client, function, last):
            run_id = str(run.get("id"))
            history = await client.history(run_id)
            # the replay runs workflow code, maybe slow: off the loop the client uses
            problem = await asyncio.to_thread(check, worker, history)
            outcome = Outcome(run_id, function, problem)
            report(outcome)
            outcomes.append(outcome)
    return outcomes
