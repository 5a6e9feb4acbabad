"""What relaying a worker's report costs the coordinator in `split`: decoding it from the worker's
`WorkerReports` and encoding it again into the engine's `ReportBatchRequest` (the CPU that carrying
the commands as opaque bytes could save), per report of the `order` workload.

    .venv/bin/python bench/relay_cost.py

A report as the order worker sends it mid-run: a step's result with the next step's start.
"""

from __future__ import annotations

import json
import time

from trine_proto.codec import decode, encode
from trine_proto.trine.v1 import (
    Command,
    JournalEntry,
    ReportBatchRequest,
    ReportRequest,
    StepCompleted,
    StepStarted,
    WorkerMessage,
    WorkerReport,
    WorkerReports,
)

BATCH = 8
"""Reports per worker message (a loaded turn of the worker's loop)."""
ROUNDS = 5_000


def report(index: int) -> ReportRequest:
    output = json.dumps({"step": "charge", "order_id": "o-1", "charged": 19.99}).encode()
    entry = JournalEntry(index=index, name="charge", output=output, attempt=1)
    return ReportRequest(
        run_id="01M8TPTND50N0FFFD9X896XAWJ",
        lease_id="ILDd0O9SfhPokiPmIu6dPA",
        commands=[
            Command(step_completed=StepCompleted(entry=entry)),
            Command(step_started=StepStarted(index=index + 1, name="ship", attempt=1)),
        ],
    )


def main() -> None:
    reports = [WorkerReport(request_id=i, report=report(i)) for i in range(BATCH)]
    wire = encode(WorkerMessage(reports=WorkerReports(reports=reports)))
    started = time.perf_counter()
    for _ in range(ROUNDS):
        message = decode(WorkerMessage, wire)
    decoding = (time.perf_counter() - started) / ROUNDS / BATCH
    assert message.reports is not None
    batch = ReportBatchRequest(reports=[r.report for r in message.reports.reports if r.report])
    started = time.perf_counter()
    for _ in range(ROUNDS):
        encode(batch)
    encoding = (time.perf_counter() - started) / ROUNDS / BATCH
    print(
        f"per report ({len(wire) // BATCH} bytes): decode {decoding * 1e6:.1f} us, "
        f"encode {encoding * 1e6:.1f} us, relay {(decoding + encoding) * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
