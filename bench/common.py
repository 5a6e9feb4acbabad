"""What the bench scripts share: a running trine (``running_cluster``), the figures of its
processes, the HTTP client, the processes' logs, and the markdown tables (``print_header``,
``print_row``, ``median_row``).

Not a bench itself; ``throughput.py``, ``waits.py`` and ``sse.py`` import it from this folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TOPOLOGIES as TOPOLOGIES  # the tests' process harness, reused
from harness import Cluster, Proc

Columns = list[tuple[str, str]]  # (key, format) of each column after the first, ``round``


# -- the runtime's processes -----------------------------------------------------------------------


@dataclass
class BenchCluster(Cluster):
    """A ``Cluster`` that remembers how many lines each worker had logged when the runtime was
    stopped: what they log after (the coordinator going away) is the stop's doing, not a problem."""

    logged_before_stop: dict[Path, int] = field(default_factory=dict)

    def stop_runtime(self) -> list[int]:
        """SIGTERM the runtime's processes and wait for them to exit."""
        self.logged_before_stop = {
            p.log.path: len(p.log.lines()) for p in self.procs if p not in self.runtime
        }
        return super().stop_runtime()


NO_FSYNC = """\
import sys as _sys

if {"--target=all", "--target=engine"} & set(_sys.orig_argv):
    from trine_engine.storage import store as _store

    _write = _store.Store.write
    _store.Store.write = lambda self, batch, sync=True: _write(self, batch, False)
    _store.Store.sync_wal = lambda self: None
"""
"""A ``sitecustomize`` that takes the disk out of the engine's commits: every RocksDB write
unsynced, the sync thread's ``SyncWAL`` a no-op (the hand-off to the thread and back stays).
What a bench measures with it is what a commit costs apart from waiting for the disk; nothing
in trine can turn fsync off. Only in the process that holds the engine: the others (the worker,
split's gateway and coordinator) do not import the engine for it."""


def no_fsync_site(folder: Path) -> Path:
    """``folder`` with :data:`NO_FSYNC` as its ``sitecustomize``, for a process's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(NO_FSYNC)
    return folder


@contextmanager
def running_cluster(
    topology: str,
    name: str,
    keep_under: str | None = None,
    prefix: str = "trine-waits-",
    report: bool = True,
    env: dict[str, str] | None = None,
    worker_scheme: str = "grpc",
) -> Iterator[BenchCluster]:
    """A started trine of ``topology`` on free loopback ports and a fresh data dir: a temporary
    dir (``prefix``), or ``keep_under/name`` (a new dir, kept with the processes' logs). The
    caller starts its workers and may stop the runtime (``cluster.stop_runtime()``). On leaving,
    every process still alive is killed; with ``report``, an exception prints the tail of each
    process's log, and the warnings and errors they logged (until the runtime's stop) go to
    stderr. ``env``: more variables for every process (the runtime's and the workers')."""
    with workdir(keep_under, name, prefix) as path:
        cluster = BenchCluster(
            topology=topology,
            workdir=path,
            extra_env=dict(env or {}),
            worker_scheme=worker_scheme,
        )
        try:
            cluster.start()
            yield cluster
        except BaseException:
            if report:
                log_tails(cluster)
            raise
        finally:
            cluster.close()
            if report:
                log_problems(cluster, cluster.logged_before_stop)


@contextmanager
def workdir(keep_under: str | None, name: str, prefix: str) -> Iterator[Path]:
    if keep_under:
        path = Path(keep_under) / name
        path.mkdir(parents=True, exist_ok=False)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)


def target(proc: Proc) -> str:
    """``all``, ``engine``, ``coordinator`` or ``gateway`` (the harness names it trine-<target>)."""
    return proc.name.removeprefix("trine-")


def engine_proc(cluster: Cluster) -> Proc:
    """The process that holds the engine: ``trine-all`` or ``trine-engine``."""
    return next(p for p in cluster.runtime if target(p) in ("all", "engine"))


def engine_stats(proc: Proc) -> dict[str, Any]:
    """The ``engine stats`` record the engine logs at shutdown (journal append percentiles)."""
    for record in proc.log.records():
        if record.get("event") == "engine stats":
            return record
    return {}


def proc_figures(proc: Proc) -> dict[str, float]:
    """Peak RSS (MB) and CPU seconds of a live process, from /proc."""
    pid = proc.popen.pid
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"rss_mb": hwm_kb / 1024, "cpu_s": cpu}


def figures(procs: list[Proc]) -> dict[str, float]:
    """Peak RSS (MB) and CPU seconds, summed over processes (split: the three runtime ones)."""
    each = [proc_figures(proc) for proc in procs]
    return {"rss_mb": sum(f["rss_mb"] for f in each), "cpu_s": sum(f["cpu_s"] for f in each)}


def rss_now_mb(proc: Proc) -> float:
    """Current RSS (MB) of a live process (proc_figures gives the peak, VmHWM)."""
    status = Path(f"/proc/{proc.popen.pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return kb / 1024


def gateway_proc(cluster: Cluster) -> Proc:
    """The process that serves HTTP: ``trine-all`` or ``trine-gateway``."""
    return next(p for p in cluster.runtime if target(p) in ("all", "gateway"))


def cpu_s(procs: list[Proc]) -> float:
    return sum(proc_figures(proc)["cpu_s"] for proc in procs)


# -- logs ------------------------------------------------------------------------------------------


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def log_problems(cluster: Cluster, until: dict[Path, int]) -> None:
    """Warnings, errors and tracebacks in every process's log, summarized on stderr."""
    for proc in cluster.procs:
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for line in proc.log.lines()[: until.get(proc.log.path)]:
            if line.startswith("{"):
                try:
                    level = str(json.loads(line).get("level", ""))
                except json.JSONDecodeError:
                    level = ""
                if level not in ("warning", "error", "critical", "exception"):
                    continue
            elif "Traceback" not in line and "Error" not in line and "WARNING" not in line:
                continue
            key = line[:160]
            counts[key] += 1
            examples.setdefault(key, line[:600])
        if counts:
            warn(f"{sum(counts.values())} warning/error lines in {proc.log.path}:")
            for key, n in counts.most_common(5):
                print(f"    {n}x {examples[key]}", file=sys.stderr, flush=True)


def log_tails(cluster: Cluster) -> None:
    for proc in cluster.procs:
        print(f"--- {proc.log.path} (last lines)\n{proc.log.tail(20)}", file=sys.stderr)


# -- HTTP ------------------------------------------------------------------------------------------


def session(concurrency: int) -> aiohttp.ClientSession:
    """aiohttp, as the peers' harness uses: httpx spends ~90% of a core at concurrency 100 and
    becomes the bottleneck it is meant to measure."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def start_runs(url: str, inputs: list[dict[str, Any]], concurrency: int) -> list[str]:
    """Start one run per input (``function`` and ``input``), POST /v1/runs at ``concurrency``;
    their ids in input order."""
    ids: list[str] = [""] * len(inputs)
    async with session(concurrency) as http:
        queue = iter(range(len(inputs)))

        async def client() -> None:
            for i in queue:
                async with http.post(f"{url}/v1/runs", json=inputs[i]) as response:
                    answer = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"run {i} not started: {response.status} {answer}")
                ids[i] = answer["id"]

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return ids


async def any_in(http: aiohttp.ClientSession, url: str, function: str, status: str) -> bool:
    """Whether any run of ``function`` has ``status`` (one listing of one run)."""
    params = {"status": status, "function": function, "limit": "1"}
    async with http.get(f"{url}/v1/runs", params=params) as response:
        page = await response.json()
    if response.status != 200:
        raise RuntimeError(f"GET /v1/runs: {response.status} {page}")
    return bool(page["runs"])


async def bounded(what: str, seconds: float, work: Any) -> Any:
    """Await ``work``, or raise after ``seconds`` (the bench's ``--timeout``)."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise RuntimeError(f"{what}: not done in {seconds:.0f} s (--timeout)") from None


LAG = "trine_event_loop_lag_seconds"


async def loop_lag_buckets(http: aiohttp.ClientSession, url: str) -> dict[float, float]:
    """The cumulative buckets of ``LAG`` (upper bound in s: count) that ``url``/metrics serves:
    the loop of the process serving HTTP (in ``all``, every role's)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == LAG
        for sample in family.samples
        if sample.name == f"{LAG}_bucket"
    }


def lag_figures(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """p50, p90, p99 and max of the loop's lag between two readings, in ms, each the upper
    bound of its bucket (inf: past the last bound); NaN without a tick."""
    moved = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = moved[-1][1] if moved else 0.0
    quantiles = {"lag_p50_ms": 0.5, "lag_p90_ms": 0.9, "lag_p99_ms": 0.99, "lag_max_ms": 1.0}
    if not total:
        return {key: float("nan") for key in quantiles}
    return {
        key: next(bound for bound, count in moved if count >= q * total) * 1000
        for key, q in quantiles.items()
    }


# -- figures and tables ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def per_turn_list(text: str) -> list[str]:
    """``--requests-per-turn``'s comma list: distinct whole numbers, 0 or more, in the order given;
    ``[""]`` (the shipped default, nothing set) when empty. ValueError names a bad one."""
    values = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    for value in values:
        if not value.isdigit():
            raise ValueError(f"--requests-per-turn: {value!r} is not a whole number >= 0")
    return values or [""]


def topology_list(text: str) -> list[str]:
    """``--topologies``' comma list."""
    return [t.strip() for t in text.split(",") if t.strip()]


def print_header(columns: Columns) -> None:
    print("| round | " + " | ".join(key for key, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|", flush=True)


def print_row(columns: Columns, label: str, row: dict[str, Any]) -> None:
    """One markdown row: ``label``, then each column's value formatted (``-`` if None)."""
    cells = [label] + [
        "-" if row.get(key) is None else fmt.format(row[key]) for key, fmt in columns
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


def print_rows(columns: Columns, label: str, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        print_row(columns, label, row)


def median_row(columns: Columns, rows: list[dict[str, Any]], text: Iterable[str]) -> dict[str, Any]:
    """The rows of one workload over the rounds, as one: the first row's ``text`` columns (but
    ``ok``: every round's, space-separated), the median of the others' values that are not None
    (None if none is)."""
    text = set(text)
    medians: dict[str, Any] = {}
    for key, _ in columns:
        values = [row[key] for row in rows if row.get(key) is not None]
        if key == "ok":
            medians[key] = " ".join(values)
        elif key in text:
            medians[key] = rows[0][key]
        else:
            medians[key] = statistics.median(values) if values else None
    return medians
