"""Core's instruments as prometheus-client metric families, built at each scrape.

:class:`TrineCollector` is a prometheus-client custom collector: it reads
:meth:`trine_core.instruments.Registry.collect` when prometheus-client collects, so recording
stays prometheus-free and costs the same whether anyone scrapes or not. Collection calls the
gauges' callbacks, which read the roles' state: do it on the event loop (both of this plugin's
servers do).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from trine_core.instruments import REGISTRY, Family, Registry


class TrineCollector(Collector):
    """Every instrument of ``registry`` (the process's by default) as a metric family."""

    def __init__(self, registry: Registry = REGISTRY) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            yield to_metric(family)


def to_metric(family: Family) -> Metric:
    labels = list(family.labelnames)
    if family.kind == "counter":
        counter = CounterMetricFamily(family.name, family.help, labels=labels)
        for sample in family.samples:
            counter.add_metric(list(sample.labels), sample.value)
        return counter
    if family.kind == "gauge":
        gauge = GaugeMetricFamily(family.name, family.help, labels=labels)
        for sample in family.samples:
            gauge.add_metric(list(sample.labels), sample.value)
        return gauge
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        bounds = [repr(bound) for bound in family.bounds] + ["+Inf"]
        for sample in family.samples:
            counts = zip(bounds, sample.buckets, strict=True)
            histogram.add_metric(
                list(sample.labels),
                buckets=[(le, float(count)) for le, count in counts],
                sum_value=sample.value,
            )
        return histogram
    raise ValueError(f"instrument {family.name}: unknown kind {family.kind!r}")


_EXPOSITION: CollectorRegistry | None = None


def exposition_registry() -> CollectorRegistry:
    """The process's prometheus-client registry: trine's instruments, and prometheus-client's
    process (CPU, memory, open files), platform and garbage-collector metrics. One per process,
    made on first use."""
    global _EXPOSITION
    if _EXPOSITION is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TrineCollector())
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        _EXPOSITION = registry
    return _EXPOSITION
