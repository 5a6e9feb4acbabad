"""A report, worked out before anything changes.

A worker's commands are checked and turned into journal entries, events and the run's next state
without touching the run, so a report that is refused (a step out of order, a payload too large)
changes nothing; the accepted plan is then appended and applied as it is. Each command kind has
its planner (``plan_steps``, ``plan_waits``, ``plan_ending``); they fill one :class:`Plan`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trine_core import InvalidArgument
from trine_engine.machine.events import NewEvents
from trine_proto.trine.v1 import ErrorInfo, JournalEntry, ReportOutcome, Run, RunStatus

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.run_state import RunState


class Plan:
    """What a report does to its run. The planners read the run through it and write their
    effects into it; the machine applies the result."""

    __slots__ = (
        "at",
        "attempt_ended",
        "build_id",
        "children",
        "consumed",
        "entries",
        "error",
        "events",
        "final_status",
        "last_name",
        "length",
        "machine",
        "outcome",
        "resolved",
        "result",
        "retry_at_ms",
        "run",
        "state",
        "step_attempts",
        "step_ends",
    )

    def __init__(
        self, machine: StateMachine, state: RunState, at_ms: int, build_id: str = ""
    ) -> None:
        run = state.run
        self.machine = machine
        self.build_id = build_id
        """The build of the worker that reported (a run it blocks names it)."""
        self.state = state
        self.run: Run = run
        self.at = at_ms
        self.length = len(state.journal)
        """The journal's length once the entries planned so far are added."""
        self.last_name: str | None = state.journal[-1].name if state.journal else None
        self.events = NewEvents(run.id, run.last_event_seq, at_ms)
        self.entries: list[JournalEntry] = []
        self.resolved: list[JournalEntry] = []
        """New entries resolved at once (a signal already kept, a past due time): the worker
        goes on with them instead of suspending."""
        self.children: list[Run] = []
        self.step_attempts: dict[int, int] = {}
        self.consumed: dict[str, int] = {}
        """Kept signals this report's waits take, by name."""
        self.outcome = ReportOutcome.CONTINUE
        self.retry_at_ms = 0
        self.final_status: RunStatus | None = None
        self.result = b""
        self.error: ErrorInfo | None = None
        self.step_ends: list[tuple[str, int]] = []
        """Step attempts this report ends, for the metrics: (``completed``, ``retried`` or
        ``failed``, the attempt's duration in ms, or -1 when the worker gave no start time)."""
        self.attempt_ended = False
        """The attempt ends with this command (a retry is scheduled, the run finished): the
        commands after it are not planned."""

    def follows(self, index: int, name: str) -> bool:
        """True for the next journal position, False for a repeat of the last entry (a no-op);
        InvalidArgument for anything else."""
        if index == self.length:
            return True
        if index + 1 == self.length and name == self.last_name:
            return False
        raise InvalidArgument(
            f"step {index} ({name!r}) of run {self.run.id} does not follow its journal, which "
            f"has {self.length} entries",
            run_id=self.run.id,
            index=index,
            journal_length=self.length,
        )

    def entry(self, index: int) -> JournalEntry:
        """The entry at ``index`` (below :attr:`length`): journaled, or planned by this report."""
        journal = self.state.journal
        return journal[index] if index < len(journal) else self.entries[index - len(journal)]

    def add_entry(self, entry: JournalEntry) -> None:
        self.entries.append(entry)
        self.length, self.last_name = self.length + 1, entry.name

    def add_resolved(self, entry: JournalEntry) -> None:
        self.add_entry(entry)
        self.resolved.append(entry)
