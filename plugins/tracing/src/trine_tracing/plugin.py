"""The ``tracing`` observer: the OpenTelemetry SDK in a runtime process, from ``OTEL_*``.

Hooks only, as any third party's exporter would be: ``trine_role_started`` (the first role's)
installs the tracer provider when the environment asks for traces (:func:`~trine_tracing.setup
.configure`), ``trine_runtime_stopped`` exports what is queued. The spans themselves are the
roles', made through :mod:`trine_core.tracing`.
"""

from __future__ import annotations

import os

from trine_core import Role, RoleContext, Settings, get_logger, hookimpl
from trine_tracing import setup


@hookimpl
def trine_role_started(name: str, role: Role, context: RoleContext) -> None:
    if setup.configured() is not None:
        return
    provider = setup.configure()
    if provider is None:
        return
    get_logger("tracing").info(
        "tracing on",
        exporters=",".join(setup.wanted() or ()),
        sampler=os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        endpoint=os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None,
        service=provider.resource.attributes.get("service.name"),
    )


@hookimpl
def trine_runtime_stopped(settings: Settings) -> None:
    setup.shutdown()
