"""OpenTelemetry spans of the worker: an attempt span under the run's stored trace context, a
span per executed step attempt under it (none for a replayed step), user spans nested in the
step, waits as events, children started in the run's trace; nothing without a provider."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trine
from trine import _tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
DISPATCH = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The SDK's tracer from a provider of this test's own (the global one is set once per
    process, so it is left alone), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_tracing, "_tracer", provider.get_tracer(_tracing.TRACER_NAME))
    monkeypatch.setattr(_tracing, "enabled", lambda: True)
    monkeypatch.setattr(_tracing.trace, "get_tracer_provider", lambda: provider)
    user_tracer = provider.get_tracer("user")
    monkeypatch.setattr(trace, "get_tracer", lambda *_a, **_k: user_tracer)
    yield exporter
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_an_attempt_and_its_steps_are_spans_in_the_runs_trace(
    spans, coordinator, make_worker, serve, item, entry
) -> None:
    worker = make_worker()

    def charge(amount: int) -> int:  # a sync step: runs in a thread, in the step's context
        with trace.get_tracer("user").start_as_current_span("user.charge"):
            return amount

    @worker.function
    async def order(ctx: trine.Context, amount: int) -> int:
        await ctx.step("reserve", lambda: 1)  # replayed from the journal: no span
        return await ctx.step("charge", charge, amount)

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "order", 5, journal=[entry(0, "reserve", 1)], attempt=2)
    work.run.trace_context = {"traceparent": PARENT}
    session.dispatch(work)
    await coordinator.until(lambda: "trine.attempt order" in by_name(spans))

    named = by_name(spans)
    assert set(named) == {"trine.attempt order", "trine.step charge", "user.charge"}
    attempt, step, user = (
        named["trine.attempt order"],
        named["trine.step charge"],
        named["user.charge"],
    )
    assert {format(s.context.trace_id, "032x") for s in named.values()} == {TRACE_ID}
    assert attempt.parent is not None
    assert format(attempt.parent.span_id, "016x") == "b7ad6b7169203331"
    assert step.parent is not None
    assert step.parent.span_id == attempt.context.span_id
    assert user.parent is not None
    assert user.parent.span_id == step.context.span_id
    assert dict(attempt.attributes or {}) == {
        "trine.run_id": "r1",
        "trine.function": "order",
        "trine.attempt": 2,
        "trine.outcome": "completed",
    }
    assert dict(step.attributes or {}) == {
        "trine.run_id": "r1",
        "trine.function": "order",
        "trine.step.name": "charge",
        "trine.step.index": 1,
        "trine.step.attempt": 1,
        "trine.outcome": "completed",
    }


async def test_the_dispatchs_context_is_the_parent_and_failures_mark_the_spans(
    spans, coordinator, make_worker, serve, item
) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> None:
        await ctx.step("charge", _decline, retry=trine.RetryPolicy(max_attempts=1))

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "order")
    work.run.trace_context = {"traceparent": PARENT}
    work.trace_context = {"traceparent": DISPATCH}
    session.dispatch(work)
    await coordinator.until(lambda: "trine.attempt order" in by_name(spans))
    named = by_name(spans)
    attempt, step = named["trine.attempt order"], named["trine.step charge"]
    assert attempt.parent is not None
    assert format(attempt.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert (attempt.attributes or {})["trine.outcome"] == "failed"
    assert (step.attributes or {})["trine.outcome"] == "failed"
    assert not attempt.status.is_ok
    assert not step.status.is_ok
    assert [event.name for event in step.events] == ["exception"]


def _decline() -> None:
    raise ValueError("card declined")


async def test_waits_are_events_and_children_join_the_trace(
    spans, coordinator, make_worker, serve, item, waits_suspend
) -> None:
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, _: None) -> None:
        await ctx.run_many([("child", 1)])

    coordinator.ack_policy = waits_suspend
    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "parent")
    work.run.trace_context = {"traceparent": PARENT}
    session.dispatch(work)
    await coordinator.until(lambda: len(session.reports) == 1)
    await coordinator.until(lambda: len(spans.get_finished_spans()) == 1)
    [attempt] = spans.get_finished_spans()
    assert (attempt.attributes or {})["trine.outcome"] == "suspended"
    [event] = attempt.events
    assert (event.name, dict(event.attributes or {})) == (
        "trine.child",
        {"trine.wait.name": "child", "trine.wait.index": 0},
    )
    [start] = [c.start_child for c in session.reports[0].report.commands]
    span_id = format(attempt.context.span_id, "016x")
    assert start.trace_context["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"
    assert json.loads(start.input) == 1


async def test_without_a_tracer_provider_nothing_is_traced(
    coordinator, make_worker, serve, item
) -> None:
    assert not _tracing.enabled()  # no test sets the global provider
    assert _tracing.current_context() == {}
    worker = make_worker()

    @worker.function
    async def parent(ctx: trine.Context, _: None) -> str:
        await ctx.step("one", lambda: 1)
        return await ctx.run("child")

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "parent")
    work.run.trace_context = {"traceparent": PARENT}
    session.dispatch(work)
    await coordinator.until(lambda: any(k == "start_child" for k, _ in session.commands("r1")))
    [start] = [value for k, value in session.commands("r1") if k == "start_child"]
    assert not start.trace_context


async def test_an_unsampled_run_gets_no_spans(spans, coordinator, make_worker, serve, item) -> None:
    worker = make_worker()

    @worker.function
    async def order(ctx: trine.Context, _: None) -> int:
        return await ctx.step("charge", lambda: 1)

    serve(worker)
    session = await coordinator.registered()
    work = item("r1", "order")
    work.run.trace_context = {"traceparent": PARENT[:-2] + "00"}
    session.dispatch(work)
    await coordinator.until(lambda: session.finished("r1"))
    assert not spans.get_finished_spans()
