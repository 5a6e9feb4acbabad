"""trine_core.instruments: counters, gauges, histograms, and what collecting them gives."""

from __future__ import annotations

import threading

import pytest

from trine_core.instruments import REGISTRY, Family, Registry


def family(registry: Registry, name: str) -> Family:
    return next(f for f in registry.collect() if f.name == name)


def test_a_counter_adds_per_label_set() -> None:
    registry = Registry()
    runs = registry.counter("trine_test_runs_total", "runs", ("function", "status"))
    runs.labels("order", "completed").inc()
    runs.labels("order", "completed").inc(2)
    runs.labels("order", "failed").inc()
    got = family(registry, "trine_test_runs_total")
    assert got.kind == "counter"
    assert got.labelnames == ("function", "status")
    assert {s.labels: s.value for s in got.samples} == {
        ("order", "completed"): 3.0,
        ("order", "failed"): 1.0,
    }


def test_an_unlabelled_counter_has_one_sample_from_the_start() -> None:
    registry = Registry()
    batches = registry.counter("trine_test_batches_total", "batches")
    assert [(s.labels, s.value) for s in family(registry, batches.name).samples] == [((), 0.0)]
    batches.inc()
    assert family(registry, batches.name).samples[0].value == 1.0


def test_label_values_must_match_the_label_names() -> None:
    registry = Registry()
    runs = registry.counter("trine_test_labelled_total", "runs", ("function",))
    with pytest.raises(ValueError, match="has labels"):
        runs.labels("order", "extra")
    with pytest.raises(ValueError, match=r"use \.labels"):
        runs.inc()


def test_names_are_checked_and_registered_once() -> None:
    registry = Registry()
    registry.gauge("trine_test_depth", "depth")
    with pytest.raises(ValueError, match="registered twice"):
        registry.gauge("trine_test_depth", "depth")
    with pytest.raises(ValueError, match="use trine_"):
        registry.counter("runs_total", "no prefix")
    with pytest.raises(ValueError, match="use trine_"):
        registry.counter("trine_runs-total", "a dash")


def test_a_gauge_is_set_and_read_from_callbacks_summed() -> None:
    registry = Registry()
    streams = registry.gauge("trine_test_streams", "open streams")
    streams.inc()
    streams.inc()
    streams.dec()
    assert family(registry, streams.name).samples[0].value == 1.0
    depth = registry.gauge("trine_test_queue", "queued", ("function",))
    queues = {"order": 3, "square": 1}
    remove = depth.add_callback(lambda: {(f,): float(n) for f, n in queues.items()})
    depth.add_callback(lambda: {("order",): 2.0})  # a second engine in the process
    assert {s.labels: s.value for s in family(registry, depth.name).samples} == {
        ("order",): 5.0,
        ("square",): 1.0,
    }
    queues["order"] = 0
    remove()
    remove()  # twice is harmless
    assert {s.labels: s.value for s in family(registry, depth.name).samples} == {("order",): 2.0}


def test_an_unlabelled_gauge_callback_returns_a_number() -> None:
    registry = Registry()
    workers = registry.gauge("trine_test_workers", "workers")
    workers.add_callback(lambda: 4)
    workers.set(1)
    assert family(registry, workers.name).samples[0].value == 5.0


def test_a_callback_with_the_wrong_labels_is_an_error() -> None:
    registry = Registry()
    depth = registry.gauge("trine_test_wrong", "queued", ("function",))
    depth.add_callback(lambda: 1.0)
    with pytest.raises(ValueError, match="gave labels"):
        registry.collect()


def test_a_histogram_counts_into_inclusive_buckets_cumulatively() -> None:
    registry = Registry()
    latency = registry.histogram("trine_test_seconds", "latency", ("op",), buckets=(0.1, 1, 10))
    for value in (0.05, 0.1, 0.5, 1.0, 20.0):
        latency.labels("append").observe(value)
    got = family(registry, latency.name)
    assert got.kind == "histogram"
    assert got.bounds == (0.1, 1.0, 10.0)
    (sample,) = got.samples
    # le=0.1 holds 0.05 and 0.1 (upper bounds are inclusive); +Inf holds everything.
    assert sample.buckets == (2, 4, 4, 5)
    assert sample.count == 5
    assert sample.value == pytest.approx(21.65)


def test_histogram_buckets_must_increase() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="strictly increasing"):
        registry.histogram("trine_test_bad", "bad", buckets=(1, 1, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        registry.histogram("trine_test_empty", "bad", buckets=())


def test_collecting_from_another_thread_while_recording() -> None:
    """Recording happens on one thread (the event loop) while an exporter may collect on
    another: collection copies, so it never fails while children are being added."""
    registry = Registry()
    runs = registry.counter("trine_test_threads_total", "runs", ("function",))
    stop = threading.Event()
    errors: list[BaseException] = []

    def collect() -> None:
        try:
            while not stop.is_set():
                registry.collect()
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=collect)
    reader.start()
    try:
        for i in range(20_000):
            runs.labels(f"f{i % 2000}").inc()
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert sum(s.value for s in family(registry, runs.name).samples) == 20_000


def test_the_process_registry_exists_and_starts_empty_of_test_names() -> None:
    assert isinstance(REGISTRY, Registry)
    assert not [n for n in REGISTRY.names() if n.startswith("trine_test_")]
