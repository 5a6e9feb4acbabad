"""The run endpoints against the fake backend, over real HTTP."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import Gateway

from trine_core import Unavailable
from trine_proto.trine.v1 import EntryKind, JournalEntry

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ORDER = {"order_id": "o-1", "items": [{"sku": "A1", "qty": 2}], "amount": 19.99}


async def test_start_run_answers_201_with_the_run(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order", "input": ORDER})
    assert response.status_code == 201, response.text
    run = response.json()
    assert set(run) == {
        "id",
        "function",
        "status",
        "input",
        "result",
        "error",
        "attempt",
        "idempotency_key",
        "worker_id",
        "created_at",
        "updated_at",
        "cancel_requested",
        "cancel_deadline",
        "parent_run_id",
        "deadline",
        "waiting",
    }
    assert run["function"] == "order"
    assert run["status"] == "pending"
    assert run["input"] == ORDER
    assert run["result"] is None
    assert run["error"] is None
    assert run["attempt"] == 0
    assert run["idempotency_key"] is None
    assert run["worker_id"] is None
    assert run["created_at"] == "2023-11-14T22:13:20.123Z"
    assert ISO_MS.match(run["updated_at"])
    assert run["cancel_requested"] is False
    assert run["cancel_deadline"] is None
    assert run["parent_run_id"] is None
    assert run["deadline"] is None
    assert run["waiting"] == []
    (started,) = gateway.backend.started
    assert started.input == b'{"order_id":"o-1","items":[{"sku":"A1","qty":2}],"amount":19.99}'
    assert started.idempotency_key == ""
    assert started.timeout_ms == 0


async def test_missing_input_is_null(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order"})
    assert response.status_code == 201, response.text
    assert response.json()["input"] is None
    assert gateway.backend.started[0].input == b"null"


async def test_idempotency_key_answers_the_same_run_with_200(gateway: Gateway) -> None:
    body = {"function": "order", "input": ORDER}
    headers = {"Idempotency-Key": "k-1"}
    first = await gateway.http.post("/v1/runs", json=body, headers=headers)
    second = await gateway.http.post("/v1/runs", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["idempotency_key"] == "k-1"
    other = await gateway.http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_wait_returns_the_final_run(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/runs", params={"wait": 5}, json={"function": "echo", "input": {"x": 1}}
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["result"] == {"x": 1}


async def test_wait_that_runs_out_answers_202(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/runs", params={"wait": 0.05}, json={"function": "order", "input": ORDER}
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"


async def test_wait_with_a_reused_key_of_a_final_run_answers_200(gateway: Gateway) -> None:
    body = {"function": "echo", "input": 1}
    headers = {"Idempotency-Key": "k"}
    await gateway.http.post("/v1/runs", json=body, headers=headers)
    again = await gateway.http.post("/v1/runs", params={"wait": 1}, json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "completed"


async def test_get_run_and_long_poll_until_final(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    now = await gateway.http.get(f"/v1/runs/{run_id}")
    assert now.status_code == 200
    assert now.json()["id"] == run_id

    poll = asyncio.create_task(gateway.http.get(f"/v1/runs/{run_id}", params={"wait": 30}))
    await gateway.backend.waiting.wait()
    await gateway.backend.finish(run_id, {"ok": True})
    response = await poll
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == {"ok": True}


async def test_long_poll_that_runs_out_answers_the_run_as_it_is(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    response = await gateway.http.get(f"/v1/runs/{run_id}", params={"wait": 0.05})
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


async def test_failed_run_carries_its_error(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    await gateway.backend.fail(run_id, "card declined")
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "failed"
    assert run["result"] is None
    assert run["error"] == {
        "type": "ValueError",
        "message": "card declined",
        "traceback": "Traceback …",
    }


async def test_list_runs_pages_and_filters(gateway: Gateway) -> None:
    ids = []
    for i in range(5):
        function = "echo" if i % 2 else "order"
        response = await gateway.http.post("/v1/runs", json={"function": function, "input": i})
        ids.append(response.json()["id"])

    everything = (await gateway.http.get("/v1/runs")).json()
    assert [r["id"] for r in everything["runs"]] == ids
    assert everything["next_page_token"] is None

    page1 = (await gateway.http.get("/v1/runs", params={"limit": 2})).json()
    assert [r["id"] for r in page1["runs"]] == ids[:2]
    assert page1["next_page_token"] == ids[1]
    page2 = (await gateway.http.get("/v1/runs", params={"limit": 2, "page_token": ids[1]})).json()
    assert [r["id"] for r in page2["runs"]] == ids[2:4]

    completed = (await gateway.http.get("/v1/runs", params={"status": "completed"})).json()
    assert [r["id"] for r in completed["runs"]] == [ids[1], ids[3]]
    orders = (await gateway.http.get("/v1/runs", params={"function": "order"})).json()
    assert [r["id"] for r in orders["runs"]] == [ids[0], ids[2], ids[4]]
    none = (await gateway.http.get("/v1/runs", params={"status": "failed"})).json()
    assert none == {"runs": [], "next_page_token": None}


async def test_list_runs_refuses_bad_query_values(gateway: Gateway) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"status": "sleeping"}):
        response = await gateway.http.get("/v1/runs", params=params)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"]["errors"]


async def test_journal_embeds_outputs_and_errors(gateway: Gateway) -> None:
    from trine_proto.trine.v1 import ErrorInfo, JournalEntry

    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
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


async def test_cancel_then_cancel_again_is_a_conflict(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    cancelled = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_finished"


async def test_cancel_with_a_reason(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "by hand"})
    assert response.status_code == 200, response.text
    assert response.json()["error"]["message"] == "by hand"


async def test_functions_list_their_retry_policies(gateway: Gateway) -> None:
    response = await gateway.http.get("/v1/functions")
    assert response.status_code == 200
    assert response.json() == {
        "functions": [
            {
                "name": "order",
                "retry": {
                    "max_attempts": 5,
                    "initial_interval_ms": 100,
                    "max_interval_ms": 10_000,
                    "backoff_coefficient": 1.1,
                },
            },
            {"name": "echo", "retry": None},
        ]
    }


async def test_healthz_follows_readiness(gateway: Gateway) -> None:
    ok = await gateway.http.get("/healthz")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    gateway.readiness.ready = False
    down = await gateway.http.get("/healthz")
    assert (down.status_code, down.json()) == (503, {"status": "unavailable"})


async def test_healthz_is_unavailable_while_the_engine_does_not_answer(gateway: Gateway) -> None:
    gateway.backend.fail_with = Unavailable("cannot reach grpc://127.0.0.1:1")
    down = await gateway.http.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "reason": "cannot reach grpc://127.0.0.1:1"}
    gateway.backend.fail_with = None
    assert (await gateway.http.get("/healthz")).status_code == 200


async def test_timeout_s_sets_the_runs_deadline(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/runs", json={"function": "order", "input": ORDER, "timeout_s": 1.5}
    )
    assert response.status_code == 201, response.text
    assert gateway.backend.started[-1].timeout_ms == 1500
    assert response.json()["deadline"] == "2023-11-14T22:13:21.623Z"  # T0 + 1.5 s


@pytest.mark.parametrize(
    ("timeout_s", "timeout_ms"),
    [(1.1, 1100), (0.0001, 1), (0.0011, 2), (2, 2000), (86_400, 86_400_000), (0.0015, 2)],
)
async def test_timeout_s_rounds_up_to_milliseconds(
    gateway: Gateway, timeout_s: float, timeout_ms: int
) -> None:
    body = {"function": "order", "timeout_s": timeout_s}
    response = await gateway.http.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    assert gateway.backend.started[-1].timeout_ms == timeout_ms


async def test_null_timeout_s_is_no_deadline(gateway: Gateway) -> None:
    response = await gateway.http.post("/v1/runs", json={"function": "order", "timeout_s": None})
    assert response.status_code == 201, response.text
    assert gateway.backend.started[-1].timeout_ms == 0
    assert response.json()["deadline"] is None


async def test_a_suspended_run_shows_what_it_waits_for(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    await gateway.backend.suspend(
        run_id,
        JournalEntry(index=0, kind=EntryKind.SLEEP, name="sleep", until_ms=1_700_000_060_000),
        JournalEntry(index=1, kind=EntryKind.SIGNAL, name="approved", until_ms=1_700_000_120_500),
        JournalEntry(index=2, kind=EntryKind.CHILD, name="ship", child_run_id="01HCHILD"),
    )
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "suspended"
    assert run["waiting"] == [
        {
            "kind": "sleep",
            "index": 0,
            "name": "sleep",
            "until": "2023-11-14T22:14:20.000Z",
            "child_run_id": None,
        },
        {
            "kind": "signal",
            "index": 1,
            "name": "approved",
            "until": "2023-11-14T22:15:20.500Z",
            "child_run_id": None,
        },
        {
            "kind": "child",
            "index": 2,
            "name": "ship",
            "until": None,
            "child_run_id": "01HCHILD",
        },
    ]
    entries = (await gateway.http.get(f"/v1/runs/{run_id}/journal")).json()["entries"]
    assert [(e["kind"], e["pending"], e["until"], e["child_run_id"]) for e in entries] == [
        ("sleep", True, "2023-11-14T22:14:20.000Z", None),
        ("signal", True, "2023-11-14T22:15:20.500Z", None),
        ("child", True, None, "01HCHILD"),
    ]
    assert all(e["output"] is None and e["error"] is None for e in entries)


async def test_journal_names_every_entry_kind(gateway: Gateway) -> None:
    from trine_proto.trine.v1 import ErrorInfo

    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
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


async def test_child_run_names_its_parent(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    gateway.backend.runs[run_id].parent_run_id = "01HPARENT"
    gateway.backend.runs[run_id].parent_index = 3
    run = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert run["parent_run_id"] == "01HPARENT"


async def test_list_runs_filters_suspended_runs(gateway: Gateway) -> None:
    ids = [
        (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
        for _ in range(3)
    ]
    await gateway.backend.suspend(ids[1], JournalEntry(index=0, kind=EntryKind.SIGNAL, name="go"))
    response = await gateway.http.get("/v1/runs", params={"status": "suspended"})
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert [r["id"] for r in runs] == [ids[1]]
    assert runs[0]["waiting"][0]["name"] == "go"


async def running_with_a_step(gateway: Gateway) -> str:
    """A run that took a step on a worker: cancelling it lets the workflow clean up."""
    from trine_proto.trine.v1 import RunStatus

    run_id: str = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    run = gateway.backend.runs[run_id]
    run.status = RunStatus.RUNNING
    run.worker_id = "w-1"
    gateway.backend.journals[run_id].append(JournalEntry(index=0, name="charge", output=b"1"))
    return run_id


async def test_cancel_of_a_running_run_is_requested_with_202(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "by hand"})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "running"
    assert run["cancel_requested"] is True
    assert run["cancel_deadline"] == "2023-11-14T22:13:50.123Z"  # T0 + 30 s grace
    # asked again while it cleans up: the same answer
    again = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 202, again.text
    await gateway.backend.cancelled(run_id)
    done = (await gateway.http.get(f"/v1/runs/{run_id}")).json()
    assert done["status"] == "cancelled"
    late = await gateway.http.post(f"/v1/runs/{run_id}/cancel")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "run_finished"


async def test_cancel_with_wait_answers_200_once_cancelled(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    cancel = asyncio.create_task(
        gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 30})
    )
    await gateway.backend.waiting.wait()
    assert gateway.backend.runs[run_id].cancel_requested
    await gateway.backend.cancelled(run_id)
    response = await cancel
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_cancel_with_a_wait_that_runs_out_answers_202(gateway: Gateway) -> None:
    run_id = await running_with_a_step(gateway)
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 0.05})
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True


async def test_cancel_with_wait_of_a_run_cancelled_at_once_answers_200(gateway: Gateway) -> None:
    run_id = (await gateway.http.post("/v1/runs", json={"function": "order"})).json()["id"]
    response = await gateway.http.post(f"/v1/runs/{run_id}/cancel", params={"wait": 5})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert not gateway.backend.waiting.is_set()  # final already: no long poll
