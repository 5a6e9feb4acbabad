"""The ``tracing`` observer: off unless ``OTEL_*`` asks for traces; then the SDK's provider is
installed when the first role starts, the roles' spans reach an OTLP receiver, and the runtime's
stop flushes them. (OpenTelemetry allows one global provider per process: one test installs it.)"""

from __future__ import annotations

from typing import ClassVar

import pytest

from trine_core import TARGET, ConfigError, RoleContext, RoleRegistry, Runtime, Settings, hookimpl
from trine_core import tracing as core_tracing
from trine_tracing import setup
from trine_tracing.testing import OtlpSink

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Idle:
    name: ClassVar[str] = "idle"
    serves: ClassVar[frozenset[type]] = frozenset()
    needs: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        pass

    async def start(self, context: RoleContext) -> None:
        pass

    async def stop(self) -> None:
        pass

    def ready(self) -> bool:
        return True


class Roles:
    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role(Idle.name, Idle)


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "x"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, none"}, ["console", "none"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, ["none"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_the_environment_decides_whether_and_where(environ, exporters) -> None:
    assert setup.wanted(environ) == exporters


def test_an_unknown_exporter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown exporter 'zipkin'"):
        setup.wanted({"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_no_otel_variables_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setup.ASKS_FOR_TRACES:
        monkeypatch.delenv(name, raising=False)
    runtime = Runtime(Settings({TARGET: "idle"}), extra_plugins=(Roles(),))
    await runtime.start()
    await runtime.stop()
    assert setup.configured() is None
    assert not core_tracing.enabled()


async def test_spans_reach_an_otlp_receiver_and_stop_flushes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OtlpSink() as sink:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the stop's flush sends
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        runtime = Runtime(Settings({TARGET: "idle"}), extra_plugins=(Roles(),))
        await runtime.start()
        try:
            assert setup.configured() is not None
            assert core_tracing.enabled()
            with core_tracing.span("trine.accept order", {"traceparent": PARENT}) as span:
                assert span is not None
                span.set_attribute("trine.run_id", "r1")
            assert sink.snapshot() == []
        finally:
            await runtime.stop()
        [received] = sink.snapshot()
    assert received.service == "trine"
    assert received.name == "trine.accept order"
    assert received.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert received.parent_span_id == "b7ad6b7169203331"
    assert received.attributes == {"trine.run_id": "r1"}
