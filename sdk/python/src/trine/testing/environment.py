"""``WorkflowEnvironment``: the real runtime in the test's own event loop, with time that skips.

::

    async with WorkflowEnvironment(time_skipping=True) as env:
        env.start_worker(worker)  # the code under test: a trine.Worker
        run = await env.client.start("approval", {"request": "r", "sleep_s": 86400})
        await env.client.signal(run["id"], "approve", {"by": "ana"})
        result = await env.client.result(run["id"])  # a day of sleep, in milliseconds

The environment boots the engine, coordinator and gateway as ``trine --target=all`` does (the
installed role plugins through :class:`trine_core.Runtime`), on a temporary data dir and free
loopback ports, so two environments never share anything. The one difference is the engine's
clock, a :class:`trine_engine.clock.SkippingClock`: real time plus an offset that grows.

Time moves ahead of real time in two ways:

- ``await env.advance(seconds)``, always;
- with ``time_skipping=True``, by itself, to the next timer due (a sleep ending, a signal wait
  timing out, a retry backoff ending, a run's deadline), while a caller awaits a run's result
  through ``env.client`` (``result``, ``wait``, ``run``), that run (or a child run it awaits)
  has such a timer ahead, and the runtime is *idle*: no run is leased (no step or workflow code
  runs, no report is on its way) and none is ready to be dispatched, twice in a row with a turn
  of the event loop in between (a write being gathered at the first look is durable at the
  second, and what it makes ready is queued). Skipping only while a result is awaited means a
  test that starts a run and then signals it is never raced: time stands still (at real time's
  pace) until the test says it waits.

This module imports the runtime's packages; ``trine.testing`` imports it only when
``WorkflowEnvironment`` is first used, so the SDK alone (``pip install trine-sdk``) still imports.
``pip install 'trine[testing]'`` installs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .._declared import return_type
from ..client import Client
from ..worker import Worker

try:
    from trine_coordinator.settings import LEASE_TTL_MS as COORDINATOR_LEASE_TTL_MS
    from trine_coordinator.settings import WORKER_ADDR
    from trine_core import (
        PLUGINS,
        TARGET,
        RoleRegistry,
        Runtime,
        Settings,
        SettingsRegistry,
        hookimpl,
    )
    from trine_core.testing import free_port
    from trine_engine import plugin as engine_plugin
    from trine_engine.clock import SkippingClock
    from trine_engine.engine import Engine
    from trine_engine.settings import DATA_DIR, MAX_LEASE_TTL_MS
    from trine_gateway.plugin import HTTP_ADDR, GatewayRole
except ModuleNotFoundError as missing:  # the SDK alone: say what to install
    raise ModuleNotFoundError(
        f"trine.testing.WorkflowEnvironment runs the trine runtime in this process, and "
        f"{missing.name!r} is not installed: pip install 'trine[testing]'",
        name=missing.name,
    ) from missing

LEASE_TTL_MS = 30 * 24 * 3600 * 1000
"""The coordinator's lease TTL in an environment: 30 days (it must fit a uint32 of ms). The
engine measures leases on its clock, so an ``advance`` while a step runs would expire a lease
of the usual 30 s; the leases of an in-process worker are given back when it stops, so a long TTL
costs nothing. (An advance of more than half a second past a lease's expiry does not expire it
either: the engine takes that for a stall, see trine_engine.leases.)"""
SKIP_POLL_S = 0.002
"""How often the idle check runs while a result is awaited (two lookups and a dict scan)."""
REGISTER_TIMEOUT_S = 10.0
"""How long a request of ``env.client`` waits for the started workers to register."""
STOP_TIMEOUT_S = 5.0
"""How long closing waits for the workers to drain before it cancels them."""


class WorkflowEnvironment:
    """The engine, coordinator and gateway in this process and event loop, for tests.

    ``time_skipping``: let time jump to the next timer while ``env.client`` awaits a result and
    the runtime is idle (see the module's docstring). ``start_time``: the environment's time at
    start (an aware datetime; default: now). ``data_dir``: where the engine keeps its database
    (default: a temporary folder, removed on close; a given one is kept).
    """

    def __init__(
        self,
        *,
        time_skipping: bool = False,
        start_time: datetime | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        if start_time is not None and start_time.tzinfo is None:
            raise ValueError("start_time must be an aware datetime (with a tzinfo)")
        self.time_skipping = time_skipping
        self._start_ms = None if start_time is None else round(start_time.timestamp() * 1000)
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._data_dir: Path | None = None
        self._clock: SkippingClock | None = None
        self._runtime: Runtime | None = None
        self._engine: Engine | None = None
        self._client: _EnvironmentClient | None = None
        self._url = ""
        self._worker_address = ""
        self._workers: dict[str, tuple[Worker, asyncio.Task[None]]] = {}
        self._unregistered: set[str] = set()
        self._awaited_runs: Counter[str] = Counter()
        self._awaited = asyncio.Event()
        self._skipper: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> WorkflowEnvironment:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Boot the runtime (``async with`` calls it). A boot error (a port taken in the moment
        between choosing and binding it, a broken plugin) is raised; nothing is left behind."""
        if self._runtime is not None:
            raise RuntimeError("this WorkflowEnvironment is already started")
        self._closing = False
        self._clock = clock = SkippingClock(self._start_ms)
        if self._given_dir is not None:
            self._data_dir = self._given_dir
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="trine-env-"))
        self._worker_address = f"127.0.0.1:{free_port()}"
        runtime = Runtime(_settings(self._data_dir, self._worker_address), [_ClockedEngine(clock)])
        try:
            await runtime.start()  # stops what it started when it fails
        except BaseException:
            self._remove_data_dir()
            raise
        self._runtime = runtime
        self._engine, self._url = _engine_and_url(runtime)
        self._client = _EnvironmentClient(self)
        if self.time_skipping:
            self._skipper = asyncio.create_task(self._skip_while_awaited(), name="trine-env-skip")

    async def close(self) -> None:
        """Stop the workers (each drains for up to a few seconds, then is cancelled), the
        client, the runtime, and remove the temporary data dir; then raise what made a worker
        fail, if one did and no request of ``env.client`` raised it already. Safe to call
        twice."""
        if self._skipper is not None:
            self._skipper.cancel()
            await asyncio.gather(self._skipper, return_exceptions=True)
            self._skipper = None
        failures = await self._stop_workers()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        runtime, self._runtime = self._runtime, None
        try:
            if runtime is not None:
                await runtime.stop()
        finally:
            self._engine = None
            self._remove_data_dir()
        if failures:
            raise failures[0]

    def _remove_data_dir(self) -> None:
        if self._data_dir is not None and self._given_dir is None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        self._data_dir = None

    # -- what a test uses ------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """A ``trine.Client`` on this environment's gateway. Its requests first wait for the
        workers started so far to register; its ``result``/``wait``/``run`` let time skip."""
        if self._client is None:
            raise RuntimeError("the WorkflowEnvironment is not started (use `async with`)")
        return self._client

    @property
    def url(self) -> str:
        """The gateway's base URL (``http://127.0.0.1:<port>``), for a client of your own (its
        waits do not let time skip)."""
        self._require_started()
        return self._url

    @property
    def data_dir(self) -> Path:
        """Where the engine keeps its database (removed on close unless it was given)."""
        self._require_started()
        assert self._data_dir is not None
        return self._data_dir

    @property
    def worker_address(self) -> str:
        """Where workers connect (``127.0.0.1:<port>``): what ``start_worker`` points them at."""
        self._require_started()
        return self._worker_address

    def start_worker(self, worker: Worker) -> None:
        """Serve ``worker`` against this environment, in this event loop, until it closes.

        The worker is pointed at the environment's coordinator while it serves (its ``address``
        is put back afterwards). Requests of ``env.client`` wait until it registered, so a run
        can be started right away. Each worker needs its own ``worker_id`` (a second session of
        one id fences the first)."""
        self._require_started()
        if worker.worker_id in self._workers:
            raise ValueError(
                f"a worker with id {worker.worker_id!r} is already serving here: give each "
                f"trine.Worker(worker_id=...) its own id"
            )
        task = asyncio.create_task(
            self._serve(worker, worker.address), name=f"trine-env-worker-{worker.worker_id}"
        )
        self._workers[worker.worker_id] = (worker, task)
        self._unregistered.add(worker.worker_id)

    def now(self) -> datetime:
        """The environment's current time (UTC): real time plus everything skipped."""
        return datetime.fromtimestamp(self._require_clock().now_ms() / 1000, tz=UTC)

    async def advance(self, seconds: float | timedelta) -> None:
        """Move time ``seconds`` ahead (with or without ``time_skipping``) and return once every
        timer due by then has fired and what it wrote is durable: the runs those timers woke are
        ready (their workers take them next; await their results to see what they did).

        A step running meanwhile keeps its lease (see ``LEASE_TTL_MS``)."""
        span = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if not span >= 0:
            raise ValueError(f"time only moves forward: advance by {seconds!r}")
        clock = self._require_clock()
        clock.advance(round(span * 1000))
        await clock.settled()
        await asyncio.sleep(0)  # the timers' writes are flushed on the loop's next turn

    # -- workers ---------------------------------------------------------------------------------

    async def _serve(self, worker: Worker, previous: str) -> None:
        if self._closing:  # closed before this task first ran: shutdown() found nothing to stop
            return
        worker.address = self._worker_address
        try:
            await worker.serve(handle_signals=False)
        finally:
            worker.address = previous

    async def _workers_registered(self) -> None:
        """Until every worker started so far registered once; a worker that stopped instead
        raises what stopped it."""
        for worker_id in list(self._unregistered):
            if worker_id not in self._workers:  # a concurrent request found it failed
                continue
            worker, task = self._workers[worker_id]
            registered = asyncio.ensure_future(worker.wait_registered())
            try:
                async with asyncio.timeout(REGISTER_TIMEOUT_S):
                    await asyncio.wait({registered, task}, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                raise RuntimeError(
                    f"worker {worker_id!r} did not register with the environment's coordinator "
                    f"within {REGISTER_TIMEOUT_S:g} s"
                ) from None
            finally:
                registered.cancel()
            if task.done():  # it failed: raise why, here and only here (not again at close)
                self._workers.pop(worker_id, None)
                self._unregistered.discard(worker_id)
                task.result()
                raise RuntimeError(f"worker {worker_id!r} stopped before it registered")
            self._unregistered.discard(worker_id)

    async def _stop_workers(self) -> list[Exception]:
        """Drain every worker (cancel those still serving after ``STOP_TIMEOUT_S``); what
        made any of them fail."""
        workers, self._workers = list(self._workers.values()), {}
        self._unregistered.clear()
        self._closing = True
        for worker, _ in workers:
            worker.shutdown()
        tasks = [task for _, task in workers]
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [result for result in results if isinstance(result, Exception)]

    # -- time skipping ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _awaiting_result(self, run_id: str) -> Iterator[None]:
        """Around a caller's wait for ``run_id``'s result: time may skip meanwhile."""
        self._awaited_runs[run_id] += 1
        self._awaited.set()
        try:
            yield
        finally:
            self._awaited_runs[run_id] -= 1
            if not self._awaited_runs[run_id]:
                del self._awaited_runs[run_id]
            if not self._awaited_runs:
                self._awaited.clear()

    async def _skip_while_awaited(self) -> None:
        clock = self._require_clock()
        while True:
            await self._awaited.wait()
            await asyncio.sleep(SKIP_POLL_S)
            if await self._quiet():
                clock.skip()

    async def _quiet(self) -> bool:
        """The runtime is idle and a timer is due later, at two looks a loop turn apart with
        no timer fired between them, and an awaited run waits for time (see the module's
        docstring). That last check, made only at the second look, keeps time from running past
        the engine's stale timers (a lease's expiry, set again at each renewal, stays in its heap
        until due) when the run waits for nothing time brings: a signal without a timeout, or
        nothing at all because it just finished and the caller is about to have its result."""
        engine, clock = self._engine, self._require_clock()
        if engine is None or not engine.idle():
            return False
        due, parks = clock.next_due_ms(), clock.parks
        if due is None:
            return False
        await asyncio.sleep(0)  # a write gathered before the first look is flushed before this
        if not engine.idle() or clock.parks != parks or clock.next_due_ms() != due:
            return False
        now = clock.now_ms()
        return any(_waits_for_time(engine, run_id, now) for run_id in self._awaited_runs)

    # -- checks ----------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._runtime is None:
            raise RuntimeError("the WorkflowEnvironment is not started (use `async with`)")

    def _require_clock(self) -> SkippingClock:
        if self._clock is None or self._runtime is None:
            raise RuntimeError("the WorkflowEnvironment is not started (use `async with`)")
        return self._clock


# -- the client ----------------------------------------------------------------------------------


class _EnvironmentClient(Client):
    """``trine.Client`` on the environment's gateway: each request waits for the started
    workers to register, and waiting for a result lets time skip."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        super().__init__(env.url, transport=_AfterRegistration(env._workers_registered))
        self._env = env

    async def wait(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109
        with self._env._awaiting_result(run_id):
            return await super().wait(run_id, timeout)

    async def run(
        self,
        function: str | Callable[..., Awaitable[Any]],
        input: Any = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - as Client.run's
        *,
        idempotency_key: str | None = None,
        run_timeout: float | None = None,
    ) -> Any:
        """As ``Client.run``, as a start and then a ``result``: time may skip only once the run
        is started (``Client.run`` sends both in one request)."""
        deadline = time.monotonic() + timeout
        run = await self.start(function, input, idempotency_key, timeout=run_timeout)
        result_type = None if isinstance(function, str) else return_type(function)
        remaining = max(deadline - time.monotonic(), 0.001)
        return await self.result(str(run["id"]), remaining, result_type=result_type)


class _AfterRegistration(httpx.AsyncBaseTransport):
    """An HTTP transport that first awaits ``ready`` (the workers' registration): a run started
    before its worker registered its function would be refused as unknown."""

    def __init__(self, ready: Callable[[], Awaitable[None]]) -> None:
        self._ready = ready
        self._http = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._ready()
        return await self._http.handle_async_request(request)

    async def aclose(self) -> None:
        await self._http.aclose()


# -- the runtime ---------------------------------------------------------------------------------


def _settings(data_dir: Path, worker_address: str) -> Settings:
    """What ``trine --target=all`` would run with, on this data dir and these ports, without
    observer plugins (an environment's runtime is the code under test's, not a deployment)."""
    return Settings(
        {
            TARGET: "all",
            PLUGINS: ("none",),
            DATA_DIR: data_dir,
            WORKER_ADDR: worker_address,
            HTTP_ADDR: "127.0.0.1:0",  # the gateway binds any free port and says which
            COORDINATOR_LEASE_TTL_MS: LEASE_TTL_MS,
            MAX_LEASE_TTL_MS: LEASE_TTL_MS,  # the engine clamps leases to it: let them last
        }
    )


def _engine_and_url(runtime: Runtime) -> tuple[Engine, str]:
    engine_role, gateway = runtime.roles.get("engine"), runtime.roles.get("gateway")
    if not isinstance(engine_role, engine_plugin.EngineRole) or engine_role.engine is None:
        raise RuntimeError("the environment's runtime has no engine on its clock")
    if not isinstance(gateway, GatewayRole):
        raise RuntimeError("the environment's runtime has no gateway (is trine-gateway installed?)")
    return engine_role.engine, gateway.url


def _waits_for_time(engine: Engine, run_id: str, now_ms: int) -> bool:
    """Whether the run (active, in the engine's memory) has a timer of its own ahead: a sleep or
    a signal wait's timeout, its deadline, a cancellation's grace, a retry's backoff; or awaits a
    child run that does (children of children too)."""
    todo, seen = [run_id], set()
    while todo:
        current = todo.pop()
        snapshot = engine.inspect(current) if current not in seen else None
        seen.add(current)
        if snapshot is None or not snapshot.active:
            continue
        run = snapshot.run
        if run.deadline_ms or run.cancel_deadline_ms or run.not_before_ms > now_ms:
            return True
        for entry in snapshot.journal:
            if entry.pending and entry.until_ms:
                return True
            if entry.pending and entry.child_run_id:
                todo.append(entry.child_run_id)
    return False


class _ClockedEngine:
    """An inline plugin standing in for the installed ``engine`` role plugin (an inline plugin
    takes precedence: the installed one is then not loaded): the same settings and addresses,
    and the role above."""

    def __init__(self, clock: SkippingClock) -> None:
        self.clock = clock

    @hookimpl
    def trine_add_settings(self, registry: SettingsRegistry) -> None:
        engine_plugin.trine_add_settings(registry)

    @hookimpl
    def trine_register_roles(self, registry: RoleRegistry) -> None:
        registry.add_role(
            engine_plugin.EngineRole.name,
            functools.partial(engine_plugin.EngineRole, clock=self.clock),
        )

    @hookimpl
    def trine_contract_address(self, contract: type, settings: Settings) -> str | None:
        return engine_plugin.trine_contract_address(contract, settings)
