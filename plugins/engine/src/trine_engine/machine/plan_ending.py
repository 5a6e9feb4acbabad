"""Planning the end a workflow reports: its result, or its error (``cancelled`` when the run was
being cancelled: the workflow ended with the cancellation it was given), or a workflow error that
holds the run ``blocked`` until it is retried on fixed code."""

from __future__ import annotations

from trine_engine.machine.plan import Plan
from trine_proto.trine.v1 import (
    ErrorInfo,
    ReportOutcome,
    RunBlocked,
    RunCompleted,
    RunFailed,
    RunStatus,
)
from trine_proto.vocabulary import ErrorType


def run_completed(plan: Plan, command: RunCompleted) -> None:
    plan.result = plan.machine.json_payload(command.result, "the run's result")
    plan.final_status = RunStatus.COMPLETED
    plan.outcome = ReportOutcome.FINISHED
    plan.attempt_ended = True
    plan.events.run_completed(plan.run.function, plan.result)


def run_failed(plan: Plan, command: RunFailed) -> None:
    plan.error = command.error or ErrorInfo(type=ErrorType.ERROR)
    plan.outcome = ReportOutcome.FINISHED
    plan.attempt_ended = True
    if plan.run.cancel_requested:
        plan.final_status = RunStatus.CANCELLED
        plan.events.run_cancelled(plan.run.function, plan.error)
    else:
        plan.final_status = RunStatus.FAILED
        plan.events.run_failed(plan.run.function, plan.error)


def run_blocked(plan: Plan, command: RunBlocked) -> None:
    """The attempt ends (outcome FINISHED: the worker is done with the run) and the run is held
    ``blocked``, naming the reporting worker's build. A run being cancelled ends ``cancelled``
    instead, as a failure would: holding it for a fix would defeat the cancellation."""
    if plan.run.cancel_requested:
        run_failed(plan, RunFailed(error=command.error))
        return
    plan.error = command.error or ErrorInfo(type=ErrorType.ERROR)
    plan.outcome = ReportOutcome.FINISHED
    plan.attempt_ended = True
    plan.final_status = RunStatus.BLOCKED
    plan.events.run_blocked(plan.run.function, plan.error, plan.build_id)
