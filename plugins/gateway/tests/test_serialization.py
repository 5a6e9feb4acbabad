"""Proto messages → JSON shapes, without HTTP."""

from __future__ import annotations

import msgspec

from trine_gateway.serialization import event_json, iso_ms, payload, run_out
from trine_proto.trine.v1 import ErrorInfo, Event, Run, RunStatus


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_007) == "2023-11-14T22:13:20.007Z"


def test_empty_payload_is_null_and_others_pass_through() -> None:
    assert msgspec.json.encode({"x": payload(b"")}) == b'{"x":null}'
    assert msgspec.json.encode({"x": payload(b'{"a": [1, 2.5]}')}) == b'{"x":{"a": [1, 2.5]}}'


def test_result_only_once_completed_and_names_lowercase() -> None:
    for status in RunStatus:
        if status == RunStatus.UNSPECIFIED:
            continue
        out = run_out(Run(id="r", function="f", status=status, result=b"1"))
        assert out.status == status.name.lower()
        assert (out.result is not None) == (status == RunStatus.COMPLETED)


def test_cancelled_run_keeps_its_error() -> None:
    run = Run(
        id="r",
        function="f",
        status=RunStatus.CANCELLED,
        error=ErrorInfo(type="Cancelled", message="by hand", retryable=True),
        worker_id="w-1",
        idempotency_key="k",
    )
    body = msgspec.json.decode(msgspec.json.encode(run_out(run)))
    assert body["error"] == {"type": "Cancelled", "message": "by hand", "traceback": ""}
    assert (body["worker_id"], body["idempotency_key"]) == ("w-1", "k")
    assert body["input"] is None


def test_event_json() -> None:
    event = Event(run_id="r", seq=7, type="custom", name="progress", data=b'{"pct":5}', at_ms=0)
    assert event_json(event) == (
        '{"seq":7,"type":"custom","name":"progress","data":{"pct":5},"at":null}'
    )
