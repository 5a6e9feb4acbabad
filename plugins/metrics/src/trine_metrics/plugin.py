"""The ``metrics`` observer: its setting, ``/metrics`` on the gateway, its own server.

Hooks only, as any third party's exporter would be: ``trine_add_settings`` declares
``[metrics] addr``; ``trine_http_apps`` hands the gateway an ASGI app for ``/metrics``;
``trine_runtime_started`` starts the event loop's lag sampler (:mod:`trine_metrics.loop_lag`) and
:class:`~trine_metrics.server.MetricsServer` when ``addr`` is set, and ``trine_runtime_stopped``
stops both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import make_asgi_app

from trine_core import Setting, Settings, SettingsRegistry, get_logger, hookimpl
from trine_core.hookspecs import ASGIApp
from trine_metrics.collector import exposition_registry
from trine_metrics.loop_lag import LoopLagSampler
from trine_metrics.server import MetricsServer

METRICS_ADDR = Setting(
    "addr",
    "",
    "serve Prometheus metrics at http://ADDR/metrics from this process (host:port; empty: "
    "only at /metrics on the gateway's port, when a gateway runs here)",
    section="metrics",
)
METRICS_PATH = "/metrics"

_servers: dict[int, MetricsServer] = {}
"""The running servers, by the id of their runtime's settings (a process may boot twice)."""
_samplers: dict[int, LoopLagSampler] = {}
"""The running lag samplers, likewise."""


@hookimpl
def trine_add_settings(registry: SettingsRegistry) -> None:
    registry.add(METRICS_ADDR)


@hookimpl
def trine_http_apps(settings: Settings) -> Mapping[str, ASGIApp]:
    app: ASGIApp = make_asgi_app(exposition_registry())
    return {METRICS_PATH: app}


@hookimpl
def trine_runtime_started(settings: Settings, roles: Sequence[str]) -> None:
    sampler = _samplers[id(settings)] = LoopLagSampler()
    sampler.start()
    address = settings[METRICS_ADDR]
    if not address:
        return
    server = MetricsServer(exposition_registry(), address)
    server.start()  # binds now: a port in use fails the boot with one line
    _servers[id(settings)] = server
    get_logger("metrics").info("metrics listening", url=server.url)


@hookimpl
def trine_runtime_stopped(settings: Settings) -> None:
    sampler = _samplers.pop(id(settings), None)
    if sampler is not None:
        sampler.stop()
    server = _servers.pop(id(settings), None)
    if server is not None:
        server.close()
