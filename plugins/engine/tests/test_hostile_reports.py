"""What a worker (or any caller of the contracts) sends is checked before anything is journaled:
a span that would overflow the 64-bit milliseconds a record carries, a payload that is not JSON,
a signal name no client could send. Each is refused with InvalidArgument naming it, and the
engine takes changes after: one ``Sleep(duration_ms=2**64 - 1)`` used to fail the record's apply,
which stops every later change (the engine's process exits for a supervisor to restart), and the
run was dispatched again to do the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trine_core import MAX_DURATION_MS, InvalidArgument
from trine_proto.trine.v1 import (
    FunctionSpec,
    GetRunRequest,
    ListFunctionsRequest,
    RegisterFunctionsRequest,
    RunStatus,
    StartRunRequest,
)

Harness = Any
HUGE = 2**64 - 1


def _child(timeout_ms: int) -> Callable[[Harness], Any]:
    def build(h: Harness) -> Any:
        command = h.child(0)
        command.start_child.timeout_ms = timeout_ms
        return command

    return build


SPANS = {
    "sleep": lambda h: h.sleep(0, duration_ms=HUGE),
    "sleep until": lambda h: h.sleep(0, until_ms=HUGE),
    "signal wait timeout": lambda h: h.wait_signal(0, "go", timeout_ms=HUGE),
    "child timeout": _child(HUGE),
    "a span just past the bound": lambda h: h.sleep(0, duration_ms=MAX_DURATION_MS + 1),
}


async def _still_takes_changes(h: Harness) -> None:
    run = await h.start()
    assert (await h.backend.get_run(GetRunRequest(run_id=run.id))).status == RunStatus.PENDING
    await h.reopen()  # nothing was journaled that could break a restart


@pytest.mark.parametrize("build", SPANS.values(), ids=SPANS.keys())
async def test_a_span_beyond_100_years_is_refused_and_the_engine_goes_on(
    h: Harness, build: Callable[[Harness], Any]
) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    with pytest.raises(InvalidArgument, match=r"step 0|child run 0") as refused:
        await h.report(item, build(h))
    assert "100 years" in refused.value.message
    await h.report(item, h.sleep(0, duration_ms=MAX_DURATION_MS))  # the bound itself is taken
    assert h.inspect(item.run.id).run.status == RunStatus.SUSPENDED
    await _still_takes_changes(h)


async def test_a_sleep_until_a_time_already_past_resolves_at_once(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    response = await h.report(item, h.sleep(0, until_ms=1))
    assert [e.index for e in response.resolved] == [0]


async def test_a_function_timeout_beyond_100_years_is_refused_at_registration(h: Harness) -> None:
    spec = FunctionSpec(name="forever", timeout_ms=HUGE)
    with pytest.raises(
        InvalidArgument, match=r"^the timeout of function 'forever' is \d+ ms, .* \(100 years\)"
    ):
        await h.dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="w1", functions=[spec])
        )
    listed = await h.backend.list_functions(ListFunctionsRequest())
    assert [f.name for f in listed.functions] == []
    await h.register()
    with pytest.raises(InvalidArgument, match=r"^the timeout of a run of 'greet' is .*\(100 y"):
        await h.backend.start_run(StartRunRequest(function="greet", input=b"1", timeout_ms=HUGE))
    await _still_takes_changes(h)


NOT_JSON = {
    "truncated": (b'{"a": 1', "Expecting"),
    "NaN": (b"NaN", "NaN is not JSON"),
    "Infinity in an array": (b"[1, -Infinity]", "-Infinity is not JSON"),
    "not UTF-8": (b'"\xff\xfe"', "codec can't decode"),
    # json.loads(bytes) alone guesses the encoding: these were taken, and stored as they came.
    "UTF-16": ('{"a": 1}'.encode("utf-16"), "codec can't decode"),
    "UTF-8 with a byte order mark": (b"\xef\xbb\xbf[1]", "Unexpected UTF-8 BOM"),
    "two values": (b"1 2", "Extra data"),
    "nested past the recursion limit": (b"[" * 2_000 + b"]" * 2_000, "nests too deeply"),
}
CARRIERS = {
    "step output": (lambda h, data: h.completed(0, output=data), "the output of step 0"),
    "run result": (lambda h, data: h.finish(data), "the run's result"),
    "event data": (lambda h, data: h.emit("progress", data, index=0), "event 'progress'"),
    "child input": (lambda h, data: h.child(0, data=data), "the input of child run 0"),
}


@pytest.mark.parametrize(("data", "reason"), NOT_JSON.values(), ids=NOT_JSON.keys())
@pytest.mark.parametrize(("build", "what"), CARRIERS.values(), ids=CARRIERS.keys())
async def test_a_worker_payload_that_is_not_json_is_refused(
    h: Harness,
    build: Callable[[Harness, bytes], Any],
    what: str,
    data: bytes,
    reason: str,
) -> None:
    """The gateway writes stored payloads into its JSON answers and SSE lines unparsed: one that
    is not JSON would make every answer about the run invalid."""
    await h.register()
    await h.start()
    item = await h.take_one()
    with pytest.raises(InvalidArgument, match=f"^{what} is not JSON: .*{reason}"):
        await h.report(item, build(h, data))
    refused = h.inspect(item.run.id)
    assert (refused.run.last_event_seq, len(refused.journal)) == (item.run.last_event_seq, 0)
    await h.report(item, build(h, b'{"fine": [1, 2.5, null]}'))  # JSON is taken
    await _still_takes_changes(h)


async def test_a_run_input_that_is_not_json_is_refused(h: Harness) -> None:
    await h.register()
    with pytest.raises(InvalidArgument, match=r"^the run's input is not JSON"):
        await h.backend.start_run(StartRunRequest(function="greet", input=b"{bad"))


async def test_a_signal_wait_on_a_name_no_client_could_send_is_refused(h: Harness) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    with pytest.raises(InvalidArgument, match="letters, digits"):
        await h.report(item, h.wait_signal(0, "needs approval"))
    await h.report(item, h.wait_signal(0, "approval"))
    await _still_takes_changes(h)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("f" * 201, "is 201 characters; at most 200"),
        ("a\x00b", "not printable"),
        ("a\x85b", "not printable"),
    ],
)
async def test_a_function_name_too_long_or_not_printable_is_refused(
    h: Harness, name: str, problem: str
) -> None:
    """Names are logged, listed and labelled in metrics: a worker's 500 KB name, or one with a
    NUL or a newline in it, was stored and logged as it came."""
    spec = FunctionSpec(name=name)
    with pytest.raises(InvalidArgument, match=problem):
        await h.dispatcher.register_functions(
            RegisterFunctionsRequest(worker_id="w1", functions=[spec])
        )
    await h.dispatcher.register_functions(
        RegisterFunctionsRequest(worker_id="w1", functions=[FunctionSpec(name="f" * 200)])
    )
