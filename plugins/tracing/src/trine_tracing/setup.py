"""Installing the OpenTelemetry SDK's tracer provider from the standard ``OTEL_*`` variables.

Only what decides *whether* and *where* to export is read here; the SDK reads the rest itself:
the sampler (``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``; by default
``parentbased_always_on``), the OTLP endpoint, headers, timeout and compression
(``OTEL_EXPORTER_OTLP_[TRACES_]…``), the batch processor (``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_BSP_MAX_QUEUE_SIZE``…), the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import ProxyTracerProvider

from trine_core import ConfigError

EXPORTERS = ("otlp", "console", "none")
"""What ``OTEL_TRACES_EXPORTER`` may name (comma-separated): OTLP over HTTP (protobuf), the
SDK's console exporter (JSON on stdout), or none (spans are made and propagated, not sent)."""
ASKS_FOR_TRACES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
"""Tracing is on when one of these is set (and ``OTEL_SDK_DISABLED`` is not true)."""

_provider: TracerProvider | None = None


def wanted(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The exporters the environment asks for (``otlp`` when only an endpoint is set), or None
    when it asks for no tracing. An unknown name is a :class:`~trine_core.ConfigError`."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not any(env.get(name, "").strip() for name in ASKS_FOR_TRACES):
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    names = [n for n in names if n] or ["otlp"]
    for name in names:
        if name not in EXPORTERS:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (trine-tracing knows "
                f"{', '.join(EXPORTERS)})"
            )
    return names


def configure(service_name: str = "trine") -> TracerProvider | None:
    """Install the SDK's tracer provider as the process's global one, as the ``OTEL_*``
    variables say; None when they ask for no tracing, or when a provider is installed already
    (the program set up OpenTelemetry itself: trine's spans go to that one). Call it once at the
    start of a worker program to trace its runs; the runtime's ``tracing`` observer calls it."""
    global _provider
    if _provider is not None:
        return _provider
    names = wanted()
    if names is None or not isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
        return None
    attributes: dict[str, str] = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes[SERVICE_NAME] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def _exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    return None


def configured() -> TracerProvider | None:
    """The provider :func:`configure` installed, if any."""
    return _provider


def shutdown() -> None:
    """Export what is still queued and stop (the provider stays installed, as OpenTelemetry
    allows one per process, but records nothing more)."""
    if _provider is not None:
        _provider.shutdown()
