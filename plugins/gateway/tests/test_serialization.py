"""Proto messages → JSON shapes, without HTTP."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from trine_gateway.models import RunStatusName
from trine_gateway.serialization import (
    STATUS_BY_NAME,
    event_json,
    iso_ms,
    journal_entry_out,
    payload,
    run_out,
)
from trine_proto.trine.v1 import EntryKind, ErrorInfo, Event, JournalEntry, Run, RunStatus, Wait
from trine_proto.vocabulary import seconds_to_ms


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


def test_every_status_name_of_the_api_is_a_status() -> None:
    assert set(STATUS_BY_NAME) == set(get_args(RunStatusName))
    assert run_out(Run(id="r", function="f")).status == "pending"  # unspecified never fails a read


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


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (1.1, 1100),
        (0.3, 300),
        (2.675, 2675),
        (1e-9, 1),
        (0.0010001, 2),
        (59.999, 59_999),
        (3, 3000),
    ],
)
def test_seconds_to_ms_rounds_up_but_ignores_float_noise(seconds: float, ms: int) -> None:
    """The shared conversion the gateway's ``timeout_s`` goes through."""
    assert seconds_to_ms(seconds) == ms


def test_run_out_durable_fields() -> None:
    run = Run(
        id="r",
        function="f",
        status=RunStatus.SUSPENDED,
        cancel_requested=True,
        cancel_deadline_ms=1_700_000_000_007,
        parent_run_id="p",
        parent_index=2,
        deadline_ms=1_700_000_001_000,
        waiting=[
            Wait(index=1, kind=EntryKind.SIGNAL, name="go", until_ms=1_700_000_000_500),
            Wait(index=2, kind=EntryKind.CHILD, name="ship", child_run_id="c"),
            Wait(index=3, kind=EntryKind.STEP, name="not a wait"),
        ],
    )
    body = msgspec.json.decode(msgspec.json.encode(run_out(run)))
    assert body["status"] == "suspended"
    assert body["cancel_requested"] is True
    assert body["cancel_deadline"] == "2023-11-14T22:13:20.007Z"
    assert body["parent_run_id"] == "p"
    assert body["deadline"] == "2023-11-14T22:13:21.000Z"
    assert body["waiting"] == [
        {
            "kind": "signal",
            "index": 1,
            "name": "go",
            "until": "2023-11-14T22:13:20.500Z",
            "child_run_id": None,
        },
        {"kind": "child", "index": 2, "name": "ship", "until": None, "child_run_id": "c"},
    ]
    plain = msgspec.json.decode(msgspec.json.encode(run_out(Run(id="r", function="f"))))
    assert (plain["cancel_requested"], plain["cancel_deadline"]) == (False, None)
    assert (plain["parent_run_id"], plain["deadline"], plain["waiting"]) == (None, None, [])


def test_pending_journal_entry() -> None:
    entry = JournalEntry(
        index=4, kind=EntryKind.SLEEP, name="sleep", pending=True, until_ms=1_700_000_000_001
    )
    body = msgspec.json.decode(msgspec.json.encode(journal_entry_out(entry)))
    assert body["kind"] == "sleep"
    assert body["pending"] is True
    assert body["until"] == "2023-11-14T22:13:20.001Z"
    assert body["output"] is None
    assert body["child_run_id"] is None
