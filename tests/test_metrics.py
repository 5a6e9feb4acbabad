"""Prometheus metrics (trine-metrics, issue 11) in both topologies: /metrics is scraped before and
after an `order` run and the counters and histograms move by what the run did; in `split` each
process serves its own on its ``--metrics-addr`` (engine: runs and the journal; coordinator:
workers and slots; gateway: HTTP and SSE). Also: every instrument is documented."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from harness import ROOT, Cluster, sse_events, start_order, wait_run
from prometheus_client.parser import text_string_to_metric_families

from trine_core.instruments import REGISTRY
from trine_core.testing import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ORDER = {"function": "order"}
STEPS = 3  # validate, charge, ship
STEP_S = 1.0


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return get(after, name, **labels) - get(before, name, **labels)


def start_runtime(cluster: Cluster) -> dict[str, str]:
    """Start the topology's processes, each with a --metrics-addr of its own: its URL by
    target."""
    urls = {}
    cluster.runtime = []
    targets = ("all",) if cluster.topology == "all" else ("engine", "coordinator", "gateway")
    for target in targets:
        port = free_port()
        urls[target] = f"http://127.0.0.1:{port}/metrics"
        argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
        cluster.runtime.append(
            cluster.spawn(f"trine-{target}", [*argv, f"--metrics-addr=127.0.0.1:{port}"])
        )
    for proc in cluster.runtime:
        proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
        proc.log.wait_for(lambda line: "metrics listening" in line, proc.popen)
    return urls


def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_metrics_move_with_an_order_run(cluster: Cluster) -> None:
    urls = start_runtime(cluster)
    gateway = f"{cluster.url}/metrics"
    engine = urls["all" if cluster.topology == "all" else "engine"]
    coordinator = urls["all" if cluster.topology == "all" else "coordinator"]
    if cluster.topology == "all":  # the gateway's port and --metrics-addr: the same metrics
        assert "trine_runs_started_total" in httpx.get(gateway).text
    where = {"engine": engine, "coordinator": coordinator, "gateway": gateway}
    before = {process: scrape(url) for process, url in where.items()}
    assert get(before["coordinator"], "trine_workers_connected") == 0

    # Each step takes a second: the run's event stream stays open while it is scraped.
    cluster.start_worker(ORDER_STEP_DELAY_S=str(STEP_S))
    with cluster.client() as client:
        run_id = start_order(client)
        events: list[dict[str, object]] = []
        reader = threading.Thread(target=lambda: events.extend(sse_events(client, run_id)))
        reader.start()
        until(lambda: get(scrape(gateway), "trine_sse_streams_open") == 1)
        assert wait_run(client, run_id)["status"] == "completed"
        reader.join(timeout=30)
        assert events[-1]["event"] == "run.completed"
        until(lambda: get(scrape(gateway), "trine_sse_streams_open") == 0)

    after = {process: scrape(url) for process, url in where.items()}
    e0, e1 = before["engine"], after["engine"]
    assert moved(e0, e1, "trine_runs_started_total", **ORDER) == 1
    assert moved(e0, e1, "trine_runs_finished_total", **ORDER, status="completed") == 1
    assert moved(e0, e1, "trine_run_duration_seconds_count", **ORDER) == 1
    assert moved(e0, e1, "trine_step_attempts_total", **ORDER) == STEPS
    assert moved(e0, e1, "trine_step_duration_seconds_count", **ORDER) == STEPS
    assert moved(e0, e1, "trine_step_duration_seconds_sum", **ORDER) >= STEPS * STEP_S * 0.9
    assert moved(e0, e1, "trine_run_duration_seconds_sum", **ORDER) >= STEPS * STEP_S * 0.9
    assert moved(e0, e1, "trine_step_retries_total", **ORDER) == 0
    assert moved(e0, e1, "trine_dispatch_latency_seconds_count", **ORDER) == 1
    # The start, and at least one record per step (the SDK may send a slow step's start alone).
    records = moved(e0, e1, "trine_journal_batch_records_sum")
    assert records >= 1 + STEPS
    assert moved(e0, e1, "trine_journal_append_seconds_count") == records
    assert 1 <= moved(e0, e1, "trine_journal_commit_seconds_count") <= records
    assert get(e1, "trine_journal_append_seconds_bucket", le="+Inf") == get(
        e1, "trine_journal_append_seconds_count"
    )
    assert get(e1, "trine_runs_active", **ORDER) == 0
    assert get(e1, "trine_ready_queue_depth", **ORDER) == 0

    c1 = after["coordinator"]
    assert get(c1, "trine_workers_connected") == 1
    assert get(c1, "trine_worker_slots_free") == 100  # order_worker's default, nothing in flight
    assert get(c1, "trine_worker_runs_in_flight") == 0

    g0, g1 = before["gateway"], after["gateway"]
    created = {"method": "POST", "route": "/v1/runs", "status": "201"}
    assert moved(g0, g1, "trine_http_request_duration_seconds_count", **created) == 1
    streamed = {"method": "GET", "route": "/v1/runs/{run_id}/events", "status": "200"}
    assert moved(g0, g1, "trine_http_request_duration_seconds_count", **streamed) == 1
    assert get(g1, "process_resident_memory_bytes") > 0
    for process, samples in after.items():  # each process samples its own loop, every 0.1 s
        lag = "trine_event_loop_lag_seconds"
        ticks = moved(before[process], samples, f"{lag}_count")
        assert ticks >= 1, process
        assert get(samples, f"{lag}_bucket", le="+Inf") == get(samples, f"{lag}_count")

    if cluster.topology == "split":  # each process serves what it records, and no other's
        assert not any(name.startswith("trine_http_request") for name, _ in e1)
        assert not any(name.startswith("trine_journal") and v for (name, _), v in g1.items())
        assert get(c1, "trine_runs_started_total", **ORDER) == 0
        assert get(g1, "trine_workers_connected") == 0


def test_plugins_none_turns_metrics_off(cluster: Cluster) -> None:
    if cluster.topology == "split":
        pytest.skip("the same in every process: one topology suffices")
    cluster.start("--plugins=none")
    with cluster.client() as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200


def test_every_instrument_is_documented() -> None:
    """docs/operations.md's Metrics section names every instrument the roles register."""
    import trine_gateway.metrics  # noqa: F401  (each registers its instruments)
    import trine_metrics.loop_lag  # noqa: F401

    text = Path(ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Metrics") :]
    section = section[: m.start()] if (m := re.search(r"\n## (?!Metrics)", section)) else section
    missing = [name for name in REGISTRY.names() if f"`{name}`" not in section]
    assert missing == []
