"""Tracing: the OpenTelemetry spans trine's roles open, through the OpenTelemetry API (issue 11).

As :mod:`trine_core.instruments` is for metrics: roles record, an observer exports. The roles
use only the OpenTelemetry *API* (a dependency of core) and the process's global tracer
provider; the ``tracing`` observer (``trine-tracing``: the OpenTelemetry SDK and the OTLP
exporter, configured by the standard ``OTEL_*`` variables) installs one. Without a provider
nothing is made at all: :func:`span` yields None after one ``isinstance`` and the call sites skip
their attributes, so the hot path pays next to nothing.

One trace per run. A run's trace context (a W3C ``traceparent``/``tracestate`` carrier) is
stored with the run (``Run.trace_context``) when it starts: the context of the engine's accept
span, whose parent is the gateway's ``POST /v1/runs`` span, whose parent is the caller's
``traceparent`` header when it sent one. Every later span of the run (dispatches, the worker's
attempts and steps, waits, the run's end) has that stored context as its parent, in whatever
process and after whatever crash, so they all join one trace. Span names start with
``trine.``; attributes are ``trine.run_id``, ``trine.function`` and the like.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

__all__ = ["Span", "SpanKind", "dropped", "enabled", "inject", "record", "span"]

_VERSION = "0.1.0"


# The API's get_tracer_provider() reads os.environ on every call while none is set (2-3 µs):
# the provider the API holds once one is set is read directly when this API version has it
# (it has, since 1.0). Asking once here loads one that OTEL_PYTHON_TRACER_PROVIDER names.
trace.get_tracer_provider()
_DIRECT = hasattr(trace, "_TRACER_PROVIDER")


def enabled() -> bool:
    """True once a tracer provider is installed (the API's default proxy records nothing): only
    then are spans made. A few dozen nanoseconds."""
    if _DIRECT:
        return trace._TRACER_PROVIDER is not None
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


_tracers: dict[str, tuple[TracerProvider, Tracer]] = {}


def _tracer(name: str) -> Tracer:
    """The provider's tracer of that name, made once per provider (an SDK provider makes a new
    tracer object on every ``get_tracer``)."""
    provider = trace.get_tracer_provider()
    cached = _tracers.get(name)
    if cached is not None and cached[0] is provider:
        return cached[1]
    made = trace.get_tracer(name, _VERSION, tracer_provider=provider)
    _tracers[name] = (provider, made)
    return made


def _parent(carrier: Mapping[str, str] | None) -> Context | None:
    return propagate.extract(carrier) if carrier else None


_follows_parent: tuple[object, bool] = (None, False)


def dropped(carrier: Mapping[str, str] | None) -> bool:
    """True when no span under ``carrier`` would record: its trace was not sampled (the
    ``traceparent`` flags' sampled bit is 0) and the provider's sampler follows the parent's
    decision (``parentbased_*``, the default). Such a span is not made at all, and the carrier
    is passed on as it is: at a 10 % ratio, nine runs in ten cost no more than a string test
    per would-be span after the first (where the decision is made)."""
    global _follows_parent
    if not carrier:
        return False
    traceparent = carrier.get("traceparent", "")
    if len(traceparent) < 2 or traceparent[-1] not in "02468ace":
        return False
    provider = trace.get_tracer_provider()
    if _follows_parent[0] is not provider:
        sampler = getattr(provider, "sampler", None)
        description = sampler.get_description() if sampler is not None else ""
        _follows_parent = (provider, description.startswith("ParentBased"))
    return _follows_parent[1]


@contextmanager
def span(
    name: str,
    carrier: Mapping[str, str] | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    tracer: str = "trine",
) -> Iterator[Span | None]:
    """A span, current inside the block, child of ``carrier``'s context (a new trace when it is
    empty); None, and nothing made, without a tracer provider or when it would not record
    (:func:`dropped`: pass ``carrier`` on). An exception out of the block marks it as an error."""
    if not enabled() or dropped(carrier):
        yield None
        return
    with _tracer(tracer).start_as_current_span(
        name, context=_parent(carrier), kind=kind, attributes=attributes
    ) as current:
        yield current


def inject() -> dict[str, str]:
    """The current context as a W3C carrier (``{"traceparent": …}``), to store or send on."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def record(
    name: str,
    carrier: Mapping[str, str] | None,
    start_ms: int,
    end_ms: int,
    *,
    attributes: Mapping[str, Any] | None = None,
    error: str | None = None,
    tracer: str = "trine",
) -> None:
    """A span of something already over (a wait, a whole run), from its recorded times; nothing
    without a tracer provider, or when it would not record (:func:`dropped`)."""
    if not enabled() or dropped(carrier):
        return
    made = _tracer(tracer).start_span(
        name,
        context=_parent(carrier),
        attributes=attributes,
        start_time=start_ms * 1_000_000,
    )
    if error is not None:
        made.set_status(Status(StatusCode.ERROR, error))
    made.end(end_time=max(start_ms, end_ms) * 1_000_000)
