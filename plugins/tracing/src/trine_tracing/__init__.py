"""trine-tracing: OpenTelemetry traces for trine, an observer (``trine.plugins``: ``tracing``).

Installed (``pip install trine[tracing]``), it is enabled by default like every observer, and
active once the standard OpenTelemetry variables ask for traces: ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console``, ``none``, comma-separated) or an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``/``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, OTLP over HTTP). Then
it installs the OpenTelemetry SDK's tracer provider in the process (service name from
``OTEL_SERVICE_NAME``, else ``trine``; sampler from ``OTEL_TRACES_SAMPLER``/``_ARG``; batching
from ``OTEL_BSP_*``), so the spans the roles open through :mod:`trine_core.tracing` are
exported. A worker process gets the same with :func:`configure` (or any OpenTelemetry SDK setup
of its own: the worker SDK uses the global provider).
"""

from trine_tracing.setup import configure, configured, shutdown

__all__ = ["configure", "configured", "shutdown"]
