"""OpenTelemetry traces end to end: the runtime's processes and the worker export to one OTLP
receiver, and every span of a run, from every process, is in one trace with the right parents —
under the caller's ``traceparent``, and across a ``kill -9`` of the worker mid-step and the
replay on another worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from harness import ORDER, Cluster, sse_events, wait_run

from trine_tracing.testing import OtlpSink, ReceivedSpan

WORKER = "tests/workers/traced_worker.py"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def wait_spans(
    sink: OtlpSink, ready: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = sink.snapshot()
        if ready(spans):
            return spans
        if time.monotonic() > deadline:
            names = sorted((s.service, s.name, s.attributes.get("trine.run_id")) for s in spans)
            raise AssertionError(f"spans not there after {timeout}s: {names}")
        time.sleep(0.05)


def of_run(spans: list[ReceivedSpan], run_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("trine.run_id") == run_id]


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def test_one_trace_per_run_across_processes_a_worker_kill_and_the_callers_traceparent(
    cluster: Cluster,
) -> None:
    with OtlpSink() as sink:
        cluster.extra_env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",  # export within 50 ms: the kill loses little
        )
        cluster.start()
        slow = cluster.start_worker(WORKER, ORDER_STEP_DELAY_S="1.0", OTEL_SERVICE_NAME="w1")
        with cluster.client() as http:
            answer = http.post(
                "/v1/runs",
                json={"function": "order", "input": ORDER},
                headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
            assert answer.status_code == 201, answer.text
            run_id = answer.json()["id"]
            started = sse_events(http, run_id, limit=4)  # ... validate completed, charge started
            assert started[-1]["data"]["name"] == "charge"
            # validate's span is exported before the kill (charge's, and the attempt's, never end)
            wait_spans(sink, lambda s: bool(named(of_run(s, run_id), "trine.step validate")))
            slow.kill9()
            cluster.start_worker(WORKER, OTEL_SERVICE_NAME="w2")
            assert wait_run(http, run_id)["status"] == "completed"
            # A caller's trace that is not sampled: nothing of the run is recorded anywhere.
            unsampled = http.post(
                "/v1/runs",
                json={"function": "order", "input": ORDER},
                headers={"traceparent": f"00-{'1' * 32}-{CALLER_SPAN}-00"},
            )
            assert unsampled.status_code == 201
            unsampled_id = unsampled.json()["id"]
            assert wait_run(http, unsampled_id)["status"] == "completed"
            # A run started with no traceparent is a trace of its own, rooted at the gateway.
            plain = http.post("/v1/runs", json={"function": "order", "input": ORDER})
            assert plain.status_code == 201
            plain_id = plain.json()["id"]
            assert wait_run(http, plain_id)["status"] == "completed"

        def complete(spans: list[ReceivedSpan]) -> bool:
            return all(
                named(of_run(spans, rid), "trine.run order")
                and named(of_run(spans, rid), "trine.step ship")
                and named(of_run(spans, rid), "trine.attempt order")
                for rid in (run_id, plain_id)
            )

        spans = wait_spans(sink, complete)

    run = of_run(spans, run_id)
    assert {s.trace_id for s in run} == {CALLER_TRACE}
    by_id = {s.span_id: s for s in spans}
    [gateway] = named(run, "POST /v1/runs")
    assert gateway.parent_span_id == CALLER_SPAN
    [accept] = named(run, "trine.accept order")
    assert accept.parent_span_id == gateway.span_id
    [whole] = named(run, "trine.run order")
    assert whole.parent_span_id == accept.span_id
    assert whole.attributes["trine.status"] == "completed"
    dispatches = named(run, "trine.dispatch order")
    assert len(dispatches) == 2  # the first worker's attempt, then the replay's
    assert {d.parent_span_id for d in dispatches} == {accept.span_id}
    assert sorted(d.attributes["trine.attempt"] for d in dispatches) == [1, 2]

    # The killed worker's validate step is in the trace; its attempt span never ended.
    [validate] = named(run, "trine.step validate")
    assert validate.service == "w1"
    assert validate.attributes["trine.step.attempt"] == 1
    # The replay: one attempt span under the second dispatch, steps under it; validate (acked
    # before the kill) is replayed from the journal and has no span of its own there.
    [attempt] = named(run, "trine.attempt order")
    assert attempt.service == "w2"
    assert by_id[attempt.parent_span_id].name == "trine.dispatch order"
    assert by_id[attempt.parent_span_id].attributes["trine.attempt"] == 2
    assert attempt.attributes["trine.outcome"] == "completed"
    replayed = [s for s in run if s.service == "w2" and s.name.startswith("trine.step ")]
    assert sorted(s.name for s in replayed) == ["trine.step charge", "trine.step ship"]
    assert {s.parent_span_id for s in replayed} == {attempt.span_id}
    runtime = {"POST /v1/runs", "trine.accept order", "trine.dispatch order", "trine.run order"}
    assert {s.service for s in run if s.name in runtime} == {"trine"}

    plain_spans = of_run(spans, plain_id)
    assert len({s.trace_id for s in plain_spans}) == 1
    [root] = named(plain_spans, "POST /v1/runs")
    assert root.parent_span_id == ""
    assert root.trace_id != CALLER_TRACE
    assert of_run(spans, unsampled_id) == []  # its spans would have come before the plain run's
    assert not [s for s in spans if s.trace_id == "1" * 32]


def test_waits_are_spans_and_every_attempt_of_a_suspended_run_joins_its_trace(
    cluster: Cluster,
) -> None:
    with OtlpSink() as sink:
        cluster.extra_env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint, OTEL_BSP_SCHEDULE_DELAY="50"
        )
        cluster.start()
        cluster.start_worker(WORKER, TRACED_EXAMPLE="approval_worker.py", OTEL_SERVICE_NAME="w")
        with cluster.client() as http:
            answer = http.post(
                "/v1/runs",
                json={"function": "approval", "input": {"request": "r", "sleep_s": 0.2}},
            )
            assert answer.status_code == 201, answer.text
            run_id = answer.json()["id"]
            # Once suspended on the signal (the sleep over), send it: the wait is a span then.
            deadline = time.monotonic() + 15
            while "approve" not in json.dumps(http.get(f"/v1/runs/{run_id}").json()["waiting"]):
                assert time.monotonic() < deadline, "the run never waited for its signal"
                time.sleep(0.05)
            sent = http.post(f"/v1/runs/{run_id}/signals/approve", json={"by": "ada"})
            assert sent.status_code in (200, 202), sent.text
            assert wait_run(http, run_id)["status"] == "completed"
        spans = wait_spans(
            sink,
            lambda s: (
                bool(named(of_run(s, run_id), "trine.run approval"))
                and any(
                    a.attributes.get("trine.outcome") == "completed"
                    for a in named(of_run(s, run_id), "trine.attempt approval")
                )
            ),
        )

    run = of_run(spans, run_id)
    assert len({s.trace_id for s in run}) == 1
    [accept] = named(run, "trine.accept approval")
    [sleep] = named(run, "trine.sleep sleep")
    [signal] = named(run, "trine.signal approve")
    assert sleep.parent_span_id == signal.parent_span_id == accept.span_id
    assert sleep.end_ns - sleep.start_ns >= 150_000_000  # the 0.2 s it slept
    assert sleep.attributes["trine.wait.index"] == 1
    assert signal.attributes["trine.wait.name"] == "approve"
    attempts = named(run, "trine.attempt approval")
    outcomes = sorted(str(a.attributes["trine.outcome"]) for a in attempts)
    assert outcomes == ["completed", "suspended", "suspended"]  # on the sleep, on the signal
    events = [e for a in attempts for e in a.events]
    assert {"trine.sleep", "trine.signal"} <= set(events)
    [step] = named(run, "trine.step open_ticket")  # executed once; replayed after
    assert by_name_parent(spans, step) == "trine.attempt approval"


def by_name_parent(spans: list[ReceivedSpan], span: ReceivedSpan) -> str:
    parents = [s for s in spans if s.span_id == span.parent_span_id]
    return parents[0].name if parents else ""
