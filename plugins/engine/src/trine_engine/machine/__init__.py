"""The run state machine: planning a worker's commands, applying log records, and the timers that
write records of their own (docs/internals.md, "Runs").

``machine`` holds :class:`StateMachine` and its two tables; ``plan`` and ``plan_*`` plan the
commands of a report, one function per command kind; ``apply_*`` apply the records, one function
per record kind (``apply_retry``: a failed or blocked run retried, a run moved to a build);
``events`` builds every event; ``errors`` every error the engine writes;
``timeouts`` sets and fires the runs' timers.
"""

from trine_engine.machine.machine import APPLIERS, PLANNERS, StateMachine
from trine_engine.machine.plan import Plan

__all__ = ["APPLIERS", "PLANNERS", "Plan", "StateMachine"]
