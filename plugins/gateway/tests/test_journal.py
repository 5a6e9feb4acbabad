"""``GET /v1/runs/{id}/journal``: entries with their outputs and errors, every kind named."""

from __future__ import annotations

from conftest import Gateway, start
from drive import (
    cancel_observed,
    emit,
    sleep,
    start_child,
    step_completed,
    step_failed,
    wait_signal,
)

from trine_proto.trine.v1 import ErrorInfo


async def test_journal_embeds_outputs_and_errors(gateway: Gateway) -> None:
    run_id = await start(gateway)
    charged = step_completed(
        0,
        "charge",
        {"charged": 19.99},
        input_digest="sha256:ab",
        started_at_ms=1_700_000_000_000,
        ended_at_ms=1_700_000_000_250,
    )
    await gateway.drive.report(run_id, charged)
    no_truck = ErrorInfo(type="IOError", message="no truck", traceback="tb", retryable=False)
    failed = step_failed(
        1, "ship", no_truck, attempt=3, input_digest="sha256:cd", started_at_ms=1_700_000_001_000
    )
    gateway.clock.now_ms = 1_700_000_001_001  # when the failure is reported: its end
    await gateway.drive.report(run_id, failed)
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
    drive = gateway.drive
    await gateway.http.post(f"/v1/runs/{run_id}/signals/go", json={"by": "ana"})  # kept
    await drive.suspend_on(
        run_id,
        step_completed(0, "charge", 1),
        sleep(1, until_ms=1_700_000_000_000),  # due already
        wait_signal(2, "go"),  # the kept signal
        start_child(3, "echo"),
    )
    child_run_id = await drive.child_of(run_id, 3)
    await drive.complete(child_run_id, "ok")
    await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "by hand"})
    await drive.report(run_id, cancel_observed(4), emit("progress", {"pct": 50}, index=5))
    entries = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    kinds = ["step", "sleep", "signal", "child", "cancel", "emit"]
    assert [e["kind"] for e in entries] == kinds
    assert [e["output"] for e in entries] == [1, None, {"by": "ana"}, "ok", None, {"pct": 50}]
    assert entries[5]["name"] == "progress"
    assert entries[1]["until"] == "2023-11-14T22:13:20.000Z"
    assert entries[3]["child_run_id"] == child_run_id
    assert entries[4]["error"]["type"] == "Cancelled"
    assert not any(e["pending"] for e in entries)
