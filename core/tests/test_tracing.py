"""``trine_core.tracing``: spans only with a tracer provider, parented by a stored carrier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trine_core import tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A provider of the test's own (the global one can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer)
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: provider)
    yield exporter
    provider.shutdown()


def test_without_a_provider_nothing_is_made() -> None:
    assert not tracing.enabled()
    with tracing.span("trine.accept order", PARENT) as span:
        assert span is None
    tracing.record("trine.run order", PARENT, 1, 2)


def test_a_span_is_a_child_of_its_carrier_and_inject_gives_its_context(spans) -> None:
    with tracing.span("trine.accept order", PARENT, attributes={"trine.function": "order"}) as s:
        assert s is not None
        carrier = tracing.inject()
    [made] = spans.get_finished_spans()
    assert format(made.context.trace_id, "032x") == TRACE_ID
    assert made.parent is not None
    assert format(made.parent.span_id, "016x") == "b7ad6b7169203331"
    assert carrier["traceparent"] == f"00-{TRACE_ID}-{made.context.span_id:016x}-01"


def test_no_carrier_starts_a_trace_and_an_exception_marks_the_span(spans) -> None:
    with pytest.raises(ValueError, match="boom"), tracing.span("trine.accept order"):
        raise ValueError("boom")
    [made] = spans.get_finished_spans()
    assert made.parent is None
    assert not made.status.is_ok


def test_record_makes_a_finished_span_from_recorded_times(spans) -> None:
    tracing.record("trine.sleep sleep", PARENT, 1_000, 3_500, error="SignalTimeout: late")
    [made] = spans.get_finished_spans()
    assert (made.start_time, made.end_time) == (1_000_000_000, 3_500_000_000)
    assert made.parent is not None
    assert made.status.description == "SignalTimeout: late"


def test_an_unsampled_trace_makes_no_span_under_a_parent_based_sampler(spans) -> None:
    unsampled = {"traceparent": PARENT["traceparent"][:-2] + "00"}
    assert tracing.dropped(unsampled)
    assert not tracing.dropped(PARENT)
    assert not tracing.dropped({})
    with tracing.span("trine.accept order", unsampled) as span:
        assert span is None
    tracing.record("trine.run order", unsampled, 1, 2)
    assert not spans.get_finished_spans()
