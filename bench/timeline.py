"""A lone run's wall time hop by hop: stamps at fixed points in every process, merged by clock.

``bench/latency.py --timeline DIR`` puts :data:`SITE` in every process's ``sitecustomize``. On
SIGUSR1 (the first measured run) it wraps the methods of :data:`POINTS` that the process has
loaded, each appending ``(point, time.perf_counter())`` to a list; SIGUSR2 dumps the list to
``$BENCH_TIMELINE_PREFIX-<pid>.json``. ``perf_counter`` is CLOCK_MONOTONIC on Linux, one clock
for every process of the machine, so the runtime's stamps and the worker's merge into one
sequence per run: the client's runs go one at a time, each from its request's first bytes
(``http in``) to its answer's body (``http out``).

:func:`print_timeline` prints, for each pair of consecutive stamps within a run, how often it
occurs per run and its median in ms: where a run waits (the disk, a process waking, a turn of
the loop) and where it computes, which a profile cannot tell apart. Each wrapper costs a
microsecond or two, a few dozen per run.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

SITE = r"""
import json as _json, os as _os, signal as _signal, sys as _sys, time as _time

_stamps = []
_now = _time.perf_counter

# module, class, method, stamp on entering (or None), stamp on leaving (or None)
_HTTP = "uvicorn.protocols.http.httptools_impl"
_POINTS = [
    (_HTTP, "HttpToolsProtocol", "data_received", "http in", None),
    ("litestar.routes.http", "HTTPRoute", "_call_handler_function", "handler>", "handler<"),
    ("trine_engine.backend", "EngineBackend", "_accept", "accept>", "accept<"),
    ("trine_engine.backend", "EngineBackend", "wait_run", None, "run final"),
    ("trine_engine.storage.store", "Store", "write", "write>", "write<"),
    ("trine_engine.dispatcher", "EngineDispatcher", "_work_item", "lease", None),
    ("trine_engine.dispatcher", "EngineDispatcher", "report_batch", "report>", "report<"),
    ("trine_transport_tcp.workers", "TcpWorkerStream", "send", "to worker", None),
    ("trine_transport_tcp.workers", "TcpWorkerStream", "receive", None, "from worker"),
    ("trine_transport_grpc.workers", "GrpcWorkerStream", "send", "to worker", None),
    ("trine_transport_grpc.workers", "GrpcWorkerStream", "receive", None, "from worker"),
    ("trine._tcp_transport", "TcpCoordinatorStream", "receive", None, "worker got"),
    ("trine._tcp_transport", "TcpCoordinatorStream", "send", "worker sends", None),
    ("trine._grpc_transport", "GrpcCoordinatorStream", "receive", None, "worker got"),
    ("trine._grpc_transport", "GrpcCoordinatorStream", "send", "worker sends", None),
]


def _wrapped(method, enter, leave):
    import functools, inspect

    if inspect.iscoroutinefunction(method):
        async def stamped(*args, **kwargs):
            if enter:
                _stamps.append((enter, _now()))
            try:
                return await method(*args, **kwargs)
            finally:
                if leave:
                    _stamps.append((leave, _now()))
    else:
        def stamped(*args, **kwargs):
            if enter:
                _stamps.append((enter, _now()))
            try:
                return method(*args, **kwargs)
            finally:
                if leave:
                    _stamps.append((leave, _now()))
    return functools.wraps(method)(stamped)


def _arm(*_):
    for module, cls, name, enter, leave in _POINTS:
        owner = getattr(_sys.modules.get(module), cls, None)
        if owner is not None:
            setattr(owner, name, _wrapped(getattr(owner, name), enter, leave))
    cycle = getattr(_sys.modules.get(_HTTP), "RequestResponseCycle", None)
    if cycle is not None:
        send = cycle.send

        async def sent(self, message):
            await send(self, message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                _stamps.append(("http out", _now()))

        cycle.send = sent
    open(f"{_os.environ['BENCH_TIMELINE_PREFIX']}-{_os.getpid()}.armed", "w").close()


def _dump(*_):
    path = f"{_os.environ['BENCH_TIMELINE_PREFIX']}-{_os.getpid()}.json"
    with open(path + ".part", "w") as file:
        _json.dump(_stamps, file)
    _os.replace(path + ".part", path)


_signal.signal(_signal.SIGUSR1, _arm)
_signal.signal(_signal.SIGUSR2, _dump)
"""

FIRST, LAST = "http in", "http out"
RARE = 0.25
"""Pairs that come fewer times per run than this are left out of the table."""


def runs_of(files: list[Path]) -> list[list[tuple[str, float]]]:
    """Every process's stamps merged by time and cut into runs, ``http in`` to ``http out``
    (stamps between runs, such as the last ack of the run before, are left out). The first run
    is left out too: a call already waiting when its process armed (the worker stream's
    ``receive``) is not stamped."""
    stamps: list[tuple[str, float]] = []
    for path in files:
        stamps += [(point, at) for point, at in json.loads(path.read_text())]
    stamps.sort(key=lambda stamp: stamp[1])
    runs: list[list[tuple[str, float]]] = []
    current: list[tuple[str, float]] | None = None
    for point, at in stamps:
        if current is None:
            if point == FIRST:
                current = [(point, at)]
            continue
        if point == FIRST:
            continue  # the request's later bytes
        current.append((point, at))
        if point == LAST:
            runs.append(current)
            current = None
    return runs[1:]


def print_timeline(label: str, files: list[Path]) -> None:
    """Per pair of consecutive stamps: how often it comes per run, its median in ms, and that
    median times its count (the time a run spends there); pairs that come less than once in
    four runs (a slow path taken now and then, a late message of the run before) are only
    counted."""
    runs = runs_of(files)
    if not runs:
        print(f"\nTimeline of {label}: no complete run was stamped", file=sys.stderr)
        return
    hops: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for run in runs:
        for position, ((a, at_a), (b, at_b)) in enumerate(itertools.pairwise(run)):
            hops[a, b].append((at_b - at_a) * 1000)
            order[a, b].append(position)
    total = statistics.median((run[-1][1] - run[0][1]) * 1000 for run in runs)
    print(f"\nTimeline of {label} ({len(runs)} runs; median {total:.2f} ms from the request's")
    print("first bytes to its answer's last):\n")
    print("| from | to | per run | median ms | ms a run |")
    print("|---|---|---|---|---|")
    rare = 0
    shown = 0.0
    for hop in sorted(hops, key=lambda h: statistics.median(order[h])):
        took = hops[hop]
        per_run = len(took) / len(runs)
        if per_run < RARE:
            rare += len(took)
            continue
        median = statistics.median(took)
        shown += median * per_run
        print(f"| {hop[0]} | {hop[1]} | {per_run:.2f} | {median:.3f} | {median * per_run:.3f} |")
    print(f"| sum of the rows | | | | {shown:.3f} |")
    if rare:
        print(f"\n({rare} stamps of pairs that come less than once in four runs are left out)")
    sys.stdout.flush()
