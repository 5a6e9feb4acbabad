"""betterproto2's own codec against trine_proto.codec (upb), per message, side by side.

    .venv/bin/python bench/codec.py [--rounds 5]

The messages are the hot path's: a worker's step report, a dispatch with a 3-step journal, a log
record of a step, a stored event and run. Prints one row per message with the median time per
encode and per decode (µs) of each codec and the ratio, over ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import betterproto2

from trine_proto import codec
from trine_proto.trine.engine.v1 import LogRecord, RunCommands
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    Event,
    JournalEntry,
    Lease,
    ReportRequest,
    Run,
    RunStatus,
    StepCompleted,
    StepStarted,
    WorkerMessage,
    WorkerReport,
    WorkItem,
)

RUN_ID = "01KMZ8X2V7T4Q9J3R6N5P0W1YB"
OUTPUT = b'{"step":"charge","order_id":"o-1","charged":19.99,"txn":"txn-o-1"}'
ENTRY = JournalEntry(index=1, name="charge", input_digest="3f2a9c1d0e8b7a65", output=OUTPUT)
COMMANDS = [
    Command(step_started=StepStarted(index=1, name="charge", attempt=1)),
    Command(step_completed=StepCompleted(entry=ENTRY)),
]
RUN = Run(
    id=RUN_ID,
    function="order",
    status=RunStatus.PENDING,
    input=b'{"order_id":"o-1","customer":"c-42","items":[{"sku":"A1","qty":2}],"amount":19.99}',
    created_at_ms=1_795_000_000_000,
    updated_at_ms=1_795_000_000_004,
    attempt=1,
    journal_length=2,
    last_event_seq=5,
)
MESSAGES: list[betterproto2.Message] = [
    WorkerMessage(
        report=WorkerReport(
            request_id=7, report=ReportRequest(run_id=RUN_ID, lease_id="x" * 22, commands=COMMANDS)
        )
    ),
    CoordinatorMessage(
        dispatch=WorkItem(
            run=RUN, lease=Lease(id="x" * 22, attempt=1), journal=[ENTRY, ENTRY, ENTRY]
        )
    ),
    LogRecord(run_commands=RunCommands(run_id=RUN_ID, attempt=1, commands=COMMANDS)),
    Event(run_id=RUN_ID, seq=5, type="step.completed", name="charge", data=OUTPUT),
    RUN,
]


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()
    print(
        "| message | bytes | betterproto2 encode µs | upb encode µs | ratio | "
        "betterproto2 decode µs | upb decode µs | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for message in MESSAGES:
        cls, data = type(message), codec.encode(message)
        assert codec.decode(cls, data) == message == cls.parse(data)
        times: dict[str, list[float]] = {"be": [], "ue": [], "bd": [], "ud": []}
        for _ in range(args.rounds):  # interleaved, so noise hits both codecs alike
            times["be"].append(per_call_us(lambda m=message: bytes(m), args.number))
            times["ue"].append(per_call_us(lambda m=message: codec.encode(m), args.number))
            times["bd"].append(per_call_us(lambda c=cls, d=data: c.parse(d), args.number))
            times["ud"].append(per_call_us(lambda c=cls, d=data: codec.decode(c, d), args.number))
        med = {key: statistics.median(values) for key, values in times.items()}
        print(
            f"| {cls.__name__} | {len(data)} | {med['be']:.1f} | {med['ue']:.1f} | "
            f"{med['be'] / med['ue']:.1f} | {med['bd']:.1f} | {med['ud']:.1f} | "
            f"{med['bd'] / med['ud']:.1f} |"
        )


if __name__ == "__main__":
    main()
