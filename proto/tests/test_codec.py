"""trine_proto.codec: the upb-backed codec must agree with betterproto2, byte for meaning."""

from __future__ import annotations

import betterproto2
import pytest

from trine_proto import codec
from trine_proto.trine.engine.v1 import LogRecord, RunCommands
from trine_proto.trine.v1 import (
    Command,
    CoordinatorMessage,
    Emit,
    EntryKind,
    ErrorInfo,
    FunctionSpec,
    Heartbeat,
    JournalEntry,
    Lease,
    ReportOutcome,
    ReportResponse,
    RetryPolicy,
    Run,
    RunCompleted,
    RunStatus,
    StartRunResponse,
    StepCompleted,
    Wait,
    WorkerMessage,
    WorkItem,
)

ENTRY = JournalEntry(
    index=0, name="a", output=b"1", kind=EntryKind.CHILD, pending=True, child_run_id="c"
)
RUN = Run(
    id="r1",
    function="order",
    status=RunStatus.SUSPENDED,
    input=b'{"a":1}',
    error=ErrorInfo(type="X", message="y"),
    waiting=[Wait(index=1, kind=EntryKind.SLEEP, name="sleep", until_ms=5)],
    cancel_requested=True,
)
COMMAND = Command(step_completed=StepCompleted(entry=ENTRY))
MESSAGES = [
    RUN,
    ENTRY,
    COMMAND,
    Command(),
    Heartbeat(),
    WorkerMessage(heartbeat=Heartbeat()),
    CoordinatorMessage(
        dispatch=WorkItem(
            run=RUN,
            lease=Lease(id="l", attempt=2),
            journal=[ENTRY, JournalEntry(index=1, name="b", error=ErrorInfo(type="E"))],
            step_attempts={0: 2, 3: 1},
        )
    ),
    LogRecord(
        run_commands=RunCommands(
            run_id="r",
            commands=[
                COMMAND,
                Command(emit=Emit(name="e", data=b"2")),
                Command(run_completed=RunCompleted()),
            ],
        )
    ),
    FunctionSpec(name="f", retry=RetryPolicy(max_attempts=3, backoff_coefficient=2.5)),
    Emit(name="e", data=b"2", index=0),  # an optional scalar set to its default: present
    Emit(name="e"),
    ReportResponse(outcome=ReportOutcome.SUSPENDED, resolved=[ENTRY]),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trips_and_agrees_with_betterproto2(message: betterproto2.Message) -> None:
    cls = type(message)
    data = codec.encode(message)
    assert codec.decode(cls, data) == message
    assert cls.parse(data) == message  # betterproto2 reads what upb wrote
    assert codec.decode(cls, bytes(message)) == message  # and the other way round


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_nested_messages_are_serialized_apart_into_the_same_bytes(
    message: betterproto2.Message,
) -> None:
    """encode() serializes each nested message on its own and appends it; the bytes are the
    ones the whole upb twin serializes to (field order and all; these messages' maps have at most
    two small integer keys, whose order upb keeps)."""
    assert codec.encode(message) == codec._encoder(type(message))(message).SerializeToString()


def test_a_nested_map_reads_back_whatever_the_order_of_its_entries() -> None:
    run = Run(id="r", trace_context={f"key{i}": f"value{i}" for i in range(50)})
    message = StartRunResponse(run=run, created=True)
    assert codec.decode(StartRunResponse, codec.encode(message)) == message
    assert StartRunResponse.parse(codec.encode(message)) == message


def test_an_optional_scalar_keeps_its_presence() -> None:
    assert codec.decode(Emit, codec.encode(Emit(name="e", index=0))).index == 0
    assert codec.decode(Emit, codec.encode(Emit(name="e"))).index is None


def test_oneofs_survive() -> None:
    decoded = codec.decode(LogRecord, codec.encode(MESSAGES[7]))
    kind, body = betterproto2.which_one_of(decoded, "record")
    assert kind == "run_commands"
    assert [betterproto2.which_one_of(c, "command")[0] for c in body.commands] == [
        "step_completed",
        "emit",
        "run_completed",
    ]


def test_an_unknown_enum_value_is_kept_as_a_number() -> None:
    data = codec.encode(Run(id="r"))[:0] + b"\x18\x63"  # field 3 (status) = 99
    assert codec.decode(Run, data).status == 99
