"""What the worker stream's wire costs a message: the ``grpc://`` and ``tcp://`` worker transports
side by side, both halves (the coordinator's ``serve_workers`` and the SDK's connector) in one
process on uvloop, over loopback, without the runtime around them.

    .venv/bin/python bench/worker_wire.py                  # 5 rounds x 3000 round trips each
    .venv/bin/python bench/worker_wire.py --rounds 7 --trips 5000

A round trip is what a run's step costs the wire: the worker sends a report (a step's result, its
payload ``--payload`` bytes), the hub answers its ack (with a ``ReportResponse``), the worker reads
it. One at a time, so each figure is a lone message's cost, not a batch's. The wires take turns
within each round (the order alternating), so the machine's drift hits both alike.

  rtt_p50_us, rtt_p99_us  the worker's send to its read of the ack
  cpu_us                  CPU the process spent per round trip (both halves, time.process_time)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvloop
from common import Columns, median_row, percentile, print_header, print_row, print_rows

from trine.transport import ConnectOptions, connector_for
from trine_core import Settings, WorkerServing, WorkerStream
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    JournalEntry,
    ReportAck,
    ReportRequest,
    ReportResponse,
    StepCompleted,
    WorkerMessage,
    WorkerReport,
)
from trine_transport_grpc.plugin import GrpcTransport
from trine_transport_tcp.plugin import TcpTransport

LIMIT = 4 << 20
WIRES = {"grpc": GrpcTransport, "tcp": TcpTransport}
COLUMNS: Columns = [
    ("wire", "{}"),
    ("rtt_p50_us", "{:.0f}"),
    ("rtt_p99_us", "{:.0f}"),
    ("cpu_us", "{:.0f}"),
]


class Echo:
    """A hub that acks every report, as the coordinator does (without the engine)."""

    async def serve(self, stream: WorkerStream) -> None:
        while (message := await stream.receive()) is not None:
            if message.report is not None:
                ack = ReportAck(request_id=message.report.request_id, response=ReportResponse())
                await stream.send(CoordinatorMessage(report_ack=ack))

    async def healthy(self) -> bool:
        return True


def step_report(request_id: int, payload: int) -> WorkerMessage:
    entry = JournalEntry(index=request_id, name="charge", output=b"x" * payload)
    command = Command(step_completed=StepCompleted(entry=entry))
    report = ReportRequest(run_id="r" * 26, lease_id="l" * 16, commands=[command])
    return WorkerMessage(report=WorkerReport(request_id=request_id, report=report))


async def one_wire(wire: str, trips: int, payload: int) -> dict[str, Any]:
    transport = WIRES[wire](Settings())
    listener = await transport.serve_workers(
        Echo(), f"{wire}://127.0.0.1:0", WorkerServing(LIMIT, "bench")
    )
    address = listener.address
    options = ConnectOptions(metadata={"trine-worker-instance": "bench"}, max_message_bytes=LIMIT)
    stream = await connector_for(address).connect(address, options)
    try:
        messages = [step_report(i, payload) for i in range(trips + 100)]
        for message in messages[:100]:  # warm-up: the connection, the codecs
            await stream.send(message)
            await stream.receive()
        rtts = []
        cpu = time.process_time()
        for message in messages[100:]:
            start = time.perf_counter()
            await stream.send(message)
            await stream.receive()
            rtts.append((time.perf_counter() - start) * 1e6)
        cpu = time.process_time() - cpu
        await stream.end()
        while await stream.receive() is not None:
            pass
    finally:
        await stream.close()
        await transport.close()
    return {
        "wire": wire,
        "rtt_p50_us": percentile(rtts, 0.5),
        "rtt_p99_us": percentile(rtts, 0.99),
        "cpu_us": cpu * 1e6 / trips,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--trips", type=int, default=3000)
    p.add_argument("--payload", type=int, default=200)
    args = p.parse_args()
    rows = []
    print_header(COLUMNS)
    for number in range(1, args.rounds + 1):
        order = list(WIRES) if number % 2 else list(reversed(WIRES))
        for wire in order:
            row = uvloop.run(one_wire(wire, args.trips, args.payload))
            rows.append(row)
            print_row(COLUMNS, str(number), row)
    print("\nMedians over the rounds:\n")
    print_header(COLUMNS)
    medians = [median_row(COLUMNS, [r for r in rows if r["wire"] == w], ("wire",)) for w in WIRES]
    print_rows(COLUMNS, "median", medians)


if __name__ == "__main__":
    main()
