"""``GET /v1/runs/{id}/journal``: entries with their outputs and errors, every kind named."""

from __future__ import annotations

from conftest import Gateway, start

from trine_proto.trine.v1 import EntryKind, ErrorInfo, JournalEntry


async def test_journal_embeds_outputs_and_errors(gateway: Gateway) -> None:
    run_id = await start(gateway)
    gateway.backend.journals[run_id].extend(
        [
            JournalEntry(
                index=0,
                name="charge",
                input_digest="sha256:ab",
                output=b'{"charged": 19.99}',
                attempt=1,
                started_at_ms=1_700_000_000_000,
                ended_at_ms=1_700_000_000_250,
            ),
            JournalEntry(
                index=1,
                name="ship",
                input_digest="sha256:cd",
                error=ErrorInfo(type="IOError", message="no truck", traceback="tb"),
                attempt=3,
                started_at_ms=1_700_000_001_000,
                ended_at_ms=1_700_000_001_001,
            ),
        ]
    )
    response = await gateway.http.get(f"/v1/runs/{run_id}/journal")
    assert response.status_code == 200
    assert response.json() == {
        "entries": [
            {
                "index": 0,
                "kind": "step",
                "name": "charge",
                "input_digest": "sha256:ab",
                "output": {"charged": 19.99},
                "error": None,
                "attempt": 1,
                "started_at": "2023-11-14T22:13:20.000Z",
                "ended_at": "2023-11-14T22:13:20.250Z",
                "pending": False,
                "until": None,
                "child_run_id": None,
            },
            {
                "index": 1,
                "kind": "step",
                "name": "ship",
                "input_digest": "sha256:cd",
                "output": None,
                "error": {"type": "IOError", "message": "no truck", "traceback": "tb"},
                "attempt": 3,
                "started_at": "2023-11-14T22:13:21.000Z",
                "ended_at": "2023-11-14T22:13:21.001Z",
                "pending": False,
                "until": None,
                "child_run_id": None,
            },
        ]
    }


async def test_journal_names_every_entry_kind(gateway: Gateway) -> None:
    run_id = await start(gateway)
    gateway.backend.journals[run_id].extend(
        [
            JournalEntry(index=0, kind=EntryKind.STEP, name="charge", output=b"1"),
            JournalEntry(index=1, kind=EntryKind.SLEEP, name="sleep", until_ms=1_700_000_000_000),
            JournalEntry(index=2, kind=EntryKind.SIGNAL, name="go", output=b'{"by":"ana"}'),
            JournalEntry(
                index=3, kind=EntryKind.CHILD, name="ship", child_run_id="01HC", output=b'"ok"'
            ),
            JournalEntry(
                index=4,
                kind=EntryKind.CANCEL,
                name="cancel",
                error=ErrorInfo(type="Cancelled", message="by hand"),
            ),
        ]
    )
    entries = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert [e["kind"] for e in entries] == ["step", "sleep", "signal", "child", "cancel"]
    assert [e["output"] for e in entries] == [1, None, {"by": "ana"}, "ok", None]
    assert entries[1]["until"] == "2023-11-14T22:13:20.000Z"
    assert entries[3]["child_run_id"] == "01HC"
    assert entries[4]["error"]["type"] == "Cancelled"
    assert not any(e["pending"] for e in entries)
