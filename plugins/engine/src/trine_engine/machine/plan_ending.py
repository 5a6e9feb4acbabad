"""Planning the end a workflow reports: its result, or its error (``cancelled`` when the run was
being cancelled: the workflow ended with the cancellation it was given)."""

from __future__ import annotations

from trine_engine.machine.events import json_or_null
from trine_engine.machine.plan import Plan
from trine_proto.trine.v1 import ErrorInfo, ReportOutcome, RunCompleted, RunFailed, RunStatus
from trine_proto.vocabulary import ErrorType


def run_completed(plan: Plan, command: RunCompleted) -> None:
    plan.machine.check_size(command.result, "the run's result")
    plan.result = json_or_null(command.result)
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
