"""A worker's report command by command, for :mod:`.reports`: one handler per command kind in
:data:`HANDLERS`, looked up by the name of the ``Command`` oneof field that carries it, as the
engine's planners are (``trine_engine.machine.machine.PLANNERS``), so a kind reads as one small
function instead of one branch of a long if/elif.

Handlers change the run as they go (journal, events, step attempts, kept signals, child runs);
:meth:`.reports.Reports.report` takes a snapshot first and puts it back when one refuses (raises a
``TrineError``), which is what makes a report apply whole or not at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

import betterproto2

from trine_core import errors
from trine_core.names import check_duration
from trine_core.testing.memory.runs import Runs, RunState, cancelled, error_json
from trine_core.testing.memory.runs import json_bytes as _json
from trine_proto import retry
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import ErrorType, signal_name_problem
from trine_proto.vocabulary import EventType as _E

_S, _O, _K = pb.RunStatus, pb.ReportOutcome, pb.EntryKind
_SLEEP = "sleep"
End = tuple[pb.RunStatus, bytes, pb.ErrorInfo | None]
"""How a report ended its run: the final status, the result and the error."""


class Applying:
    """One report being applied: what its handlers share (the run as the report found it, one
    time for every entry, the answer being built) and what they decide (``ended``, ``end``).

    The engine's helpers are private so that they stay off ``MemoryEngine``'s public surface (a
    test's object); this class is the one place the handlers reach them."""

    def __init__(self, engine: Runs, state: RunState) -> None:
        self.engine, self.state, self.run = engine, state, state.run
        self.now = engine.clock()
        self.answer = pb.ReportResponse(outcome=_O.CONTINUE)
        self.stop = cancelled(self.run.id) if self.run.cancel_requested else None
        """Set when cancellation was requested: a new wait then waits for nothing, resolved at
        once with this error."""
        self.ended = False
        """This attempt ends with the command just handled (a retry is scheduled, or the run
        ended): the commands after it are not applied."""
        self.end: End | None = None
        """How the run ended, if a command ended it."""

    def event(self, type_: _E, name: str, data: Any) -> None:
        self.engine._event(self.state, type_, name, data)

    def check_size(self, payload: bytes, what: str) -> bytes:
        return self.engine._check_size(payload, what)

    def start_child(
        self,
        spec: pb.FunctionSpec,
        payload: bytes,
        timeout: int,
        index: int,
        trace_context: dict[str, str] | None = None,
    ) -> str:
        """A child run of this one, waited for at ``index``: its id. It joins the trace
        ``trace_context`` names, else its parent's."""
        fields = {
            "parent_run_id": self.run.id,
            "parent_index": index,
            "trace_context": dict(trace_context or self.run.trace_context),
        }
        return self.engine._start(spec, payload, timeout, **fields).run.id

    def finish(self, status: pb.RunStatus, result: bytes, error: pb.ErrorInfo | None) -> None:
        """The run ends with this report; :meth:`.reports.Reports.report` finishes it once every
        command was accepted."""
        self.end, self.ended = (status, result, error), True

    def follows(self, index: int, name: str) -> bool:
        """True at the journal's next position, False for a repeat of its last entry (a no-op: a
        worker may send a report again), InvalidArgument elsewhere."""
        journal, run = self.state.journal, self.run
        length = len(journal)
        if index == length or (index + 1 == length and journal[-1].name == name):
            return index == length
        what = f"entry {index} ({name!r}) does not follow the {length} of run {run.id}"
        raise errors.InvalidArgument(what, run_id=run.id, index=index, journal_length=length)

    def wait(
        self,
        kind: pb.EntryKind,
        index: int,
        name: str,
        waits: bool,
        *,
        output: bytes = b"",
        until_ms: int = 0,
        child_run_id: str = "",
        error: pb.ErrorInfo | None = None,
    ) -> bool:
        """Journal a wait: pending (True), or resolved at once and then in the answer too, so the
        worker goes on instead of suspending. A cancelled run waits for nothing."""
        waits = waits and self.stop is None
        entry = pb.JournalEntry(index=index, name=name, kind=kind, pending=waits, output=output)
        entry.until_ms, entry.child_run_id, entry.error = until_ms, child_run_id, self.stop or error
        entry.started_at_ms, entry.ended_at_ms = self.now, 0 if waits else self.now
        self.state.journal.append(entry)
        if not waits:
            self.answer.resolved.append(entry)
        return waits


# -- code a worker ran: steps and the workflow's own events ---------------------------------------


def step_started(report: Applying, command: pb.StepStarted) -> None:
    data: dict[str, Any] = {"index": command.index, "attempt": command.attempt}
    report.event(_E.STEP_STARTED, command.name, data)


def step_completed(report: Applying, command: pb.StepCompleted) -> None:
    if (entry := command.entry) is None:
        raise errors.InvalidArgument("StepCompleted carries no journal entry")
    output = report.check_size(entry.output, f"the output of step {entry.index}")
    if not report.follows(entry.index, entry.name):
        return
    step = dataclasses.replace(entry, output=output, kind=_K.STEP, pending=False)
    step.ended_at_ms = step.ended_at_ms or report.now
    report.state.journal.append(step)
    head = {"index": entry.index, "attempt": entry.attempt}
    report.event(_E.STEP_COMPLETED, entry.name, _json(head, "output", output))


def step_failed(report: Applying, command: pb.StepFailed) -> None:
    """A retryable failure with attempts left ends this attempt and schedules the next; any other
    is final: journaled, for the workflow to see (and maybe catch)."""
    if not report.follows(index := command.index, name := command.name):
        return
    state, now, answer = report.state, report.now, report.answer
    attempt, error = command.attempt, command.error or pb.ErrorInfo()
    state.step_attempts[index] = max(state.step_attempts.get(index, 0), attempt)
    own = report.engine.functions.get(report.run.function, pb.FunctionSpec()).retry
    policy = retry.effective(command.retry, own)
    data = {"index": index, "attempt": attempt, "error": error_json(error)}
    if error.retryable and attempt < policy.max_attempts:
        retry_at = answer.retry_at_ms = now + policy.delay_ms(attempt)
        answer.outcome, report.ended = _O.RETRY_SCHEDULED, True
        report.event(_E.STEP_FAILED, name, data | {"retry_at_ms": retry_at})
        return
    entry = pb.JournalEntry(index=index, name=name, error=error, attempt=attempt)
    entry.input_digest, entry.started_at_ms = command.input_digest, command.started_at_ms
    entry.ended_at_ms, answer.outcome = now, _O.STEP_FAILED
    state.journal.append(entry)
    report.event(_E.STEP_FAILED, name, data | {"final": True})


def emit(report: Applying, command: pb.Emit) -> None:
    """Journaled at its index and published once; sent again for an index that journals it, a
    no-op. Without an index (an SDK from before journaled emits): published only."""
    name, journal = command.name, report.state.journal
    custom = report.check_size(command.data, f"event {name!r}")
    if (index := command.index) is None:
        report.event(_E.CUSTOM, name, custom)
        return
    if not name:
        raise errors.InvalidArgument("an event needs a name")
    if index < len(journal) and journal[index].kind == _K.EMIT and journal[index].name == name:
        return
    if index != len(journal):
        what = f"event {index} ({name!r}) does not follow the {len(journal)} of run {report.run.id}"
        raise errors.InvalidArgument(what, run_id=report.run.id, index=index)
    entry = pb.JournalEntry(index=index, name=name, kind=_K.EMIT, output=custom)
    entry.started_at_ms = entry.ended_at_ms = report.now
    journal.append(entry)
    report.event(_E.CUSTOM, name, custom)


def patched(report: Applying, command: pb.Patched) -> None:
    """The workflow took a change's new path: a ``patch`` entry named by the change id, so its
    replays take it too. Sent again for the index that journals it: a no-op."""
    index, change_id, journal = command.index, command.change_id, report.state.journal
    if not change_id:
        raise errors.InvalidArgument("a patch marker needs its change id")
    at = journal[index] if index < len(journal) else None
    if at is not None and at.kind == _K.PATCH and at.name == change_id:
        return
    if index != len(journal):
        what = f"patch {index} ({change_id!r}) does not follow the {len(journal)} of run"
        raise errors.InvalidArgument(f"{what} {report.run.id}", run_id=report.run.id, index=index)
    entry = pb.JournalEntry(index=index, name=change_id, kind=_K.PATCH, output=b"null")
    entry.started_at_ms = entry.ended_at_ms = report.now
    journal.append(entry)


# -- the run's end ------------------------------------------------------------------------------


def run_completed(report: Applying, command: pb.RunCompleted) -> None:
    result = report.check_size(command.result, "the run's result")
    report.event(_E.RUN_COMPLETED, report.run.function, result)
    report.finish(_S.COMPLETED, result, None)


def run_failed(report: Applying, command: pb.RunFailed) -> None:
    """A failure after cancellation was requested is the run's cancellation: the workflow ended
    with the ``Cancelled`` it was given."""
    error = command.error or pb.ErrorInfo(type=ErrorType.ERROR)
    ended = report.run.cancel_requested
    kind = _E.RUN_CANCELLED if ended else _E.RUN_FAILED
    report.event(kind, report.run.function, error_json(error))
    report.finish(_S.CANCELLED if ended else _S.FAILED, b"", error)


def run_blocked(report: Applying, command: pb.RunBlocked) -> None:
    """A workflow error under ``on_workflow_error = block``: the run is held, not ended (the
    attempt is: outcome FINISHED). A run being cancelled ends ``cancelled`` instead, as a failure
    would: holding it for a fix would defeat the cancellation."""
    if report.run.cancel_requested:
        return run_failed(report, pb.RunFailed(error=command.error))
    error = command.error or pb.ErrorInfo(type=ErrorType.ERROR)
    lease = report.state.lease
    data = error_json(error) | {"build_id": lease[3] if lease is not None else ""}
    report.event(_E.RUN_BLOCKED, report.run.function, data)
    report.finish(_S.BLOCKED, b"", error)


# -- waits: a sleep, a signal, a child run, and the workflow seeing its cancellation -----------


def sleep(report: Applying, command: pb.Sleep) -> None:
    i, now = command.index, report.now
    what = f"the sleep at step {i}"
    if command.until_ms:
        check_duration(command.until_ms - now, what)
    until = command.until_ms or now + check_duration(command.duration_ms, what)
    if report.follows(i, _SLEEP) and report.wait(_K.SLEEP, i, _SLEEP, until > now, until_ms=until):
        report.event(_E.TIMER_STARTED, _SLEEP, {"index": i, "until_ms": until})


def wait_signal(report: Applying, command: pb.WaitSignal) -> None:
    """A signal kept before the wait resolves it at once (the oldest first)."""
    if not (name := command.name):
        raise errors.InvalidArgument("a signal wait needs the signal's name")
    i, until = command.index, report.now + command.timeout_ms if command.timeout_ms else 0
    if not report.follows(i, name):
        return
    if (problem := signal_name_problem(name)) is not None:
        raise errors.InvalidArgument(f"the signal wait at step {i}: {problem}")
    check_duration(command.timeout_ms, f"the timeout of the signal wait at step {i}")
    kept = report.state.signals.get(name) if report.stop is None else None
    output = kept.popleft() if kept else b""
    if report.wait(_K.SIGNAL, i, name, not output, output=output, until_ms=until):
        data = {"index": i, "timeout_at_ms": until or None}
        report.event(_E.SIGNAL_WAITING, name, data)


def start_child(report: Applying, command: pb.StartChild) -> None:
    """An unknown function resolves the wait with ``UnknownFunction``, and a cancelled run starts
    no child (its ``Cancelled`` comes first)."""
    if not report.follows(index := command.index, name := command.function):
        return
    child_input = report.check_size(command.input, f"the input of child run {index}")
    check_duration(command.timeout_ms, f"the timeout of child run {index}")
    if (spec := report.engine.functions.get(name)) is None or report.stop is not None:
        unknown = f"no worker has registered function {name!r}"
        error = pb.ErrorInfo(type=ErrorType.UNKNOWN_FUNCTION, message=unknown)
        report.wait(_K.CHILD, index, name, False, error=error)
        return
    child_id = report.start_child(
        spec, child_input, command.timeout_ms, index, command.trace_context
    )
    report.wait(_K.CHILD, index, name, True, child_run_id=child_id)
    data = {"index": index, "child_run_id": child_id, "function": name}
    report.event(_E.CHILD_STARTED, name, data)


def cancel_observed(report: Applying, command: pb.CancelObserved) -> None:
    if report.follows(command.index, command.name):
        error = cancelled(report.run.id)
        report.wait(_K.CANCEL, command.index, command.name, False, error=error)


Handler = Callable[[Applying, Any], None]
"""Applies one command; its second argument is the message the command's oneof field holds."""

HANDLERS: Final[Mapping[str, Handler]] = {
    "step_started": step_started,
    "step_completed": step_completed,
    "step_failed": step_failed,
    "emit": emit,
    "patched": patched,
    "run_completed": run_completed,
    "run_failed": run_failed,
    "run_blocked": run_blocked,
    "sleep": sleep,
    "wait_signal": wait_signal,
    "start_child": start_child,
    "cancel_observed": cancel_observed,
}


def apply_commands(
    engine: Runs, state: RunState, commands: list[pb.Command]
) -> tuple[pb.ReportResponse, End | None]:
    """A report's commands in order, up to the one that ends the attempt: the answer, and how the
    run ended if it did. InvalidArgument for a command that carries nothing."""
    report = Applying(engine, state)
    for command in commands:
        kind, value = betterproto2.which_one_of(command, "command")
        if (handle := HANDLERS.get(kind)) is None:
            raise errors.InvalidArgument("a report command carries nothing")
        handle(report, value)
        if report.ended:
            break
    return report.answer, report.end
