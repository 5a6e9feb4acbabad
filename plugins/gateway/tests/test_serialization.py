"""Proto messages → JSON shapes, without HTTP."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from trine_gateway.models import EntryKindName, RunStatusName
from trine_gateway.serialization import (
    STATUS_BY_NAME,
    build_out,
    entry_kind_name,
    event_json,
    history_out,
    iso_ms,
    journal_entry_out,
    payload,
    run_out,
    worker_out,
)
from trine_proto.trine.v1 import (
    BuildInfo,
    EntryKind,
    ErrorInfo,
    Event,
    JournalEntry,
    Run,
    RunStatus,
    Wait,
    WorkerInfo,
)
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


def test_every_entry_kind_has_its_own_name() -> None:
    names = {entry_kind_name(kind) for kind in EntryKind}
    assert names == set(get_args(EntryKindName))
    assert entry_kind_name(EntryKind.PATCH) == "patch"


def test_a_blocked_run_names_its_builds_and_retries() -> None:
    run = Run(
        id="r",
        function="f",
        status=RunStatus.BLOCKED,
        error=ErrorInfo(type="NonDeterminismError", message="at 2: step 'a' vs step 'b'"),
        build_id="b-1",
        blocked_build_id="b-2",
        retries=3,
    )
    body = msgspec.json.decode(msgspec.json.encode(run_out(run)))
    assert body["status"] == "blocked"
    assert body["error"]["type"] == "NonDeterminismError"
    assert (body["build_id"], body["blocked_build_id"], body["retries"]) == ("b-1", "b-2", 3)
    assert body["waiting_for_build"] is None
    waiting = run_out(Run(id="r", function="f", build_id="b-1", waiting_for_build="b-1"))
    assert (waiting.status, waiting.waiting_for_build) == ("pending", "b-1")


def test_history_is_the_run_and_its_journal_as_the_api_reads_them() -> None:
    run = Run(id="r", function="f", status=RunStatus.COMPLETED, result=b"7", build_id="b-1")
    entries = [
        JournalEntry(index=0, kind=EntryKind.STEP, name="charge", output=b"5", attempt=1),
        JournalEntry(index=1, kind=EntryKind.PATCH, name="send-receipt"),
    ]
    body = msgspec.json.decode(msgspec.json.encode(history_out(run, entries, 1_700_000_000_007)))
    assert list(body) == ["format", "exported_at", "run", "journal"]
    assert body["format"] == "trine.history/1"
    assert body["exported_at"] == "2023-11-14T22:13:20.007Z"
    assert body["run"] == msgspec.json.decode(msgspec.json.encode(run_out(run)))
    assert body["journal"] == [
        msgspec.json.decode(msgspec.json.encode(journal_entry_out(entry))) for entry in entries
    ]
    assert [entry["kind"] for entry in body["journal"]] == ["step", "patch"]


def test_build_and_worker_out() -> None:
    build = BuildInfo(
        build_id="b-1", functions=["a", "b"], open_runs=2, connected=True, last_seen_ms=T
    )
    assert msgspec.json.decode(msgspec.json.encode(build_out(build))) == {
        "build_id": "b-1",
        "functions": ["a", "b"],
        "open_runs": 2,
        "connected": True,
        "last_seen": "2023-11-14T22:13:20.007Z",
    }
    assert build_out(BuildInfo(build_id="b-2")).last_seen is None
    worker = WorkerInfo(worker_id="w", build_id="b-1", connected_at_ms=T, last_heartbeat_at_ms=T)
    assert worker_out(worker).build_id == "b-1"
    assert worker_out(WorkerInfo(worker_id="w")).build_id is None


T = 1_700_000_000_007
