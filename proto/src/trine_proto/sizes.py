"""About how many bytes a message takes encoded, without encoding it.

Both ends of a batch (the SDK gathering a worker's reports, the coordinator gathering reports for
the engine) cap a batch's size; encoding each report to measure it would cost what batching
saves, so they count its payloads and error texts, and a little for each command's other fields.
"""

from __future__ import annotations

from trine_proto.trine.v1 import ReportRequest

COMMAND_FIELDS = 256
"""What a command's fields other than its payload count for (ids, names, numbers, framing)."""


def report_size(report: ReportRequest) -> int:
    """About how many bytes ``report``'s commands take encoded: an overestimate for small ones."""
    total = 0
    for command in report.commands:
        total += COMMAND_FIELDS
        if command.step_completed is not None and command.step_completed.entry is not None:
            total += len(command.step_completed.entry.output)
        elif command.run_completed is not None:
            total += len(command.run_completed.result)
        elif command.emit is not None:
            total += len(command.emit.data)
        elif command.start_child is not None:
            total += len(command.start_child.input)
        for failed in (command.step_failed, command.run_failed, command.run_blocked):
            if failed is not None and failed.error is not None:
                total += len(failed.error.message) + len(failed.error.traceback)
    return total
