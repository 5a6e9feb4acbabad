"""Real processes for the cross-plugin tests: the trine runtime, workers, and what they log.

Every process is started with ``sys.executable`` (the test's virtualenv), listens on free loopback
ports, logs JSON lines to a file, and is killed at teardown. Waiting is done on log lines (events),
never on sleeps.

The split topology runs secured as a production split would (issue 13): its runtime processes talk
mutual TLS to each other (``TRINE_TLS_CERT``/``KEY``/``CA``: the server certificate of
``trine certs dev``) and workers dial the coordinator over TLS with the client certificate. The
gateway keeps plain HTTP (``TRINE_GATEWAY_HTTPS=false``) so that tests reach it as in ``all``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from trine_admin.certs import DevCerts, write_dev_certs
from trine_core.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT_TIMEOUT = 30.0

# Every topology the end-to-end suite runs under: each test is parametrized over this tuple.
# `all` is one process; `split` is engine, coordinator and gateway in three processes over gRPC.
TOPOLOGIES = ("all", "split")
TARGETS = {"all": ("all",), "split": ("engine", "coordinator", "gateway")}
CERTS_DIR: Path | None = None
"""Where :func:`dev_certs` writes (tests/conftest.py sets a session directory); None: a temp dir."""


@functools.cache
def dev_certs() -> DevCerts:
    """One development CA and its certificates for the whole test session."""
    directory = CERTS_DIR or Path(tempfile.mkdtemp(prefix="trine-certs-"))
    return write_dev_certs(directory / "certs", force=True)


def runtime_tls() -> dict[str, str]:
    """A runtime process's TLS: the server certificate, served and presented to the other roles,
    the roles' CA, and the workers' CA the coordinator checks workers' certificates with."""
    certs = dev_certs()
    return {
        "TRINE_TLS_CERT": str(certs.server),
        "TRINE_TLS_KEY": str(certs.server_key),
        "TRINE_TLS_CA": str(certs.ca),
        "TRINE_COORDINATOR_WORKER_CA": str(certs.workers_ca),
    }


def worker_tls() -> dict[str, str]:
    """A worker's TLS: the roles' CA to verify the coordinator, and its client certificate."""
    certs = dev_certs()
    return {
        "TRINE_TLS_CA": str(certs.ca),
        "TRINE_TLS_CERT": str(certs.client),
        "TRINE_TLS_KEY": str(certs.client_key),
    }


def is_runtime(argv: list[str]) -> bool:
    """Whether ``argv`` runs the trine program (a role, or a command), not a worker."""
    return argv[1:3] == ["-m", "trine_core.cli"] or Path(argv[0]).name == "trine"


class LogFile:
    """A process's stderr, captured to a file and searchable while the process runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def records(self) -> Iterator[dict[str, Any]]:
        for line in self.lines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def wait_for(
        self,
        predicate: Callable[[str], bool],
        proc: subprocess.Popen[bytes] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        after: int = 0,
    ) -> str:
        """The first line from line number ``after`` on that satisfies ``predicate``.

        The log is an append-only file written by another process; re-reading it is how we
        learn of the event. Fails early, with the log, when the process dies first.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines()[after:]:
                if predicate(line):
                    return line
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process exited ({proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting in {self.path.name}:\n{self.tail()}")
            time.sleep(0.02)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines()[-n:])


_LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:(\d+)")
PORT_ATTEMPTS = 3
"""How many times :meth:`Cluster.start` picks ports and starts the processes."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: LogFile

    def kill9(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=DEFAULT_TIMEOUT)

    def terminate(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Cluster:
    """One trine deployment in a topology, plus its workers."""

    topology: str
    workdir: Path
    data_dir: Path = field(init=False)
    http_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    engine_port: int = field(default_factory=free_port)
    coordinator_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_scheme: str = "grpc"
    """The worker transport, for the coordinator's port and every worker (grpc or tcp)."""
    procs: list[Proc] = field(default_factory=list)
    runtime: list[Proc] = field(default_factory=list)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.data_dir = self.workdir / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def worker_addr(self) -> str:
        bare = f"127.0.0.1:{self.worker_port}"
        return bare if self.worker_scheme == "grpc" else f"{self.worker_scheme}://{bare}"

    def tls_env(self, worker: bool = False) -> dict[str, str]:
        """In ``split``: the runtime's mutual TLS with plain HTTP on the gateway, or a worker's
        TLS with its client certificate (:func:`runtime_tls`, :func:`worker_tls`)."""
        if self.topology != "split":
            return {}
        return worker_tls() if worker else {**runtime_tls(), "TRINE_GATEWAY_HTTPS": "false"}

    def env(self, *, worker: bool = False, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRINE_")}
        env.update(self.tls_env(worker))
        env.update(
            TRINE_DATA_DIR=str(self.data_dir),
            TRINE_HTTP_ADDR=f"127.0.0.1:{self.http_port}",
            TRINE_WORKER_ADDR=self.worker_addr,
            TRINE_ENGINE_ADDR=f"127.0.0.1:{self.engine_port}",
            TRINE_COORDINATOR_ADDR=f"127.0.0.1:{self.coordinator_port}",
            TRINE_LOG_FORMAT="json",
            TRINE_HEARTBEAT_INTERVAL_MS="200",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def spawn(self, name: str, argv: list[str], **env: str) -> Proc:
        self._serial += 1
        path = self.workdir / f"{self._serial:02d}-{name}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env(worker=not is_runtime(argv), **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, popen, LogFile(path))
        self.procs.append(proc)
        return proc

    def start(self, *flags: str, **env: str) -> None:
        """Start the runtime's processes for this topology and wait until each serves. A port
        the cluster picked can be taken before its process binds it (``free_port`` only saw it
        free, and any process's outgoing connection may get it as its ephemeral port): then
        every port is picked again and the processes started again, up to
        :data:`PORT_ATTEMPTS` times in all."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.runtime = [
                self.spawn(
                    f"trine-{target}",
                    [sys.executable, "-m", "trine_core.cli", f"--target={target}", *flags],
                    **env,
                )
                for target in TARGETS[self.topology]
            ]
            try:
                for proc in self.runtime:
                    proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
                return
            except AssertionError:
                if attempt == PORT_ATTEMPTS or not any(map(self._lost_a_port, self.runtime)):
                    raise
                self.kill9_runtime()
                self.http_port, self.worker_port = free_port(), free_port()
                self.engine_port, self.coordinator_port = free_port(), free_port()

    def _lost_a_port(self, proc: Proc) -> bool:
        """Whether ``proc`` exited because a port this cluster picked was taken meanwhile."""
        if proc.alive:
            return False
        ours = {self.http_port, self.worker_port, self.engine_port, self.coordinator_port}
        return any(
            "in use" in line and ours.intersection(map(int, _LOOPBACK_PORT.findall(line)))
            for line in proc.log.lines()
        )

    def runtime_proc(self, target: str) -> Proc:
        return next(p for p in self.runtime if p.name == f"trine-{target}")

    def restart(self, target: str, *flags: str, **env: str) -> Proc:
        """``kill -9`` one runtime process and start it again, waiting until it serves."""
        old = self.runtime_proc(target)
        old.kill9()
        argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}", *flags]
        proc = self.spawn(f"trine-{target}", argv, **env)
        self.runtime[self.runtime.index(old)] = proc
        proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
        return proc

    def kill9_runtime(self) -> None:
        for proc in self.runtime:
            proc.kill9()

    def stop_runtime(self) -> list[int]:
        return [proc.terminate() for proc in self.runtime]

    def start_worker(self, script: str = "order_worker.py", *args: str, **env: str) -> Proc:
        """Start a worker process and wait until the coordinator accepted its registration.
        ``script`` is a file in ``examples/``, or a path from the repository's root."""
        path = ROOT / script if "/" in script else EXAMPLES / script
        argv = [sys.executable, str(path), *args]
        proc = self.spawn(path.stem, argv, **env)
        self.wait_registered(proc)
        return proc

    def wait_registered(self, proc: Proc, after: int = 0) -> None:
        proc.log.wait_for(lambda line: "registered" in line.lower(), proc.popen, after=after)

    def client(self, timeout: float = DEFAULT_TIMEOUT) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive:
                proc.kill9()


ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "customer": "c-42",
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
    "amount": 19.99,
}
"""An input of the `order` workload that examples/order_worker.py serves."""


def start_order(client: httpx.Client, **input_overrides: Any) -> str:
    """Start one `order` run and return its id (the answer must be 201 Created)."""
    response = client.post(
        "/v1/runs", json={"function": "order", "input": {**ORDER, **input_overrides}}
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def start_run(http: httpx.Client, function: str, data: Any, **body: Any) -> dict[str, Any]:
    """Start a run of ``function`` (``body``: more fields of the request) and return it: the
    answer must be 201 Created."""
    response = http.post("/v1/runs", json={"function": function, "input": data, **body})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_until(
    http: httpx.Client, run_id: str, predicate: Any, timeout: float = 30.0
) -> dict[str, Any]:
    """The run once ``predicate(run)`` holds, long-polling its event stream between reads."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if predicate(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id} never got there: {run}"
        # Block until the run's next event (each state change is one), not on a timer.
        events = sse_events(http, run_id, last_event_id=str(seen), limit=1)
        if events:
            seen = int(events[-1]["id"])


def waiting_for(kind: str) -> Any:
    """A ``wait_until`` predicate: the run is suspended on one wait of this kind."""
    return lambda run: (
        run["status"] == "suspended" and [w["kind"] for w in run["waiting"]] == [kind]
    )


def send_signal(http: httpx.Client, run_id: str, name: str, payload: Any) -> httpx.Response:
    return http.post(f"/v1/runs/{run_id}/signals/{name}", json=payload)


def wait_run(client: httpx.Client, run_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The run once final (long-polls the gateway's ?wait)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/runs/{run_id}", params={"wait": 5})
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} not final after {timeout}s: {run}")


def sse_events(
    client: httpx.Client, run_id: str, last_event_id: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Read a run's SSE stream until it ends (or ``limit`` events): each event's id, type, data."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if "data" in current:
                    events.append(current)
                    if limit is not None and len(events) >= limit:
                        break
                current = {}
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[key] = json.loads(value) if key == "data" else value
    return events


def side_effects(path: Path) -> list[tuple[str, str, str]]:
    """``(kind, run_id, step)`` lines the order worker appends: kind is ``exec`` or ``ack``."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def reexecuted_after_ack(rows: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Steps executed again after their result was acknowledged: must always be empty."""
    acked: set[tuple[str, str]] = set()
    bad = []
    for kind, run_id, step in rows:
        if kind == "ack":
            acked.add((run_id, step))
        elif kind == "exec" and (run_id, step) in acked:
            bad.append((run_id, step))
    return bad
