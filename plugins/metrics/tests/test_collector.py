"""Core's instruments become Prometheus metric families at collection time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trine_core.instruments import Registry
from trine_metrics import TrineCollector, exposition_registry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(instruments: Registry) -> dict[str, Samples]:
    """Every sample of the text exposition: by family, (sample name, sorted labels) → value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrineCollector(instruments))
    text = generate_latest(registry).decode()
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(text)
    }


def test_counters_gauges_and_histograms_in_the_text_format() -> None:
    instruments = Registry()
    runs = instruments.counter("trine_t_runs_total", "runs", ("function",))
    runs.labels("order").inc(3)
    depth = instruments.gauge("trine_t_depth", "queued", ("function",))
    depth.add_callback(lambda: {("order",): 7.0})
    latency = instruments.histogram("trine_t_seconds", "latency", buckets=(0.01, 0.1))
    for value in (0.005, 0.05, 0.05, 3.0):
        latency.observe(value)

    got = scrape(instruments)

    assert got["trine_t_runs"] == {("trine_t_runs_total", (("function", "order"),)): 3.0}
    assert got["trine_t_depth"] == {("trine_t_depth", (("function", "order"),)): 7.0}
    assert got["trine_t_seconds"] == {
        ("trine_t_seconds_bucket", (("le", "0.01"),)): 1.0,
        ("trine_t_seconds_bucket", (("le", "0.1"),)): 3.0,
        ("trine_t_seconds_bucket", (("le", "+Inf"),)): 4.0,
        ("trine_t_seconds_count", ()): 4.0,
        ("trine_t_seconds_sum", ()): 3.105,
    }


def test_help_and_type_lines() -> None:
    instruments = Registry()
    instruments.counter("trine_t_total", "Things that happened.").inc()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrineCollector(instruments))
    text = generate_latest(registry).decode()
    assert "# HELP trine_t_total Things that happened." in text
    assert "# TYPE trine_t_total counter" in text
    assert "trine_t_total 1.0" in text


def test_the_exposition_registry_holds_trine_and_process_metrics() -> None:
    registry = exposition_registry()
    assert registry is exposition_registry()  # one per process
    names = {family.name for family in registry.collect()}
    assert {"process_cpu_seconds", "python_info", "python_gc_objects_collected"} <= names
