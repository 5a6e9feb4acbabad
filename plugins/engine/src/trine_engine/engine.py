"""The engine: opens the database and wires its parts together.

:meth:`Engine.open` gives an engine whose ``backend`` (for the gateway) and ``dispatcher`` (for
the coordinator) are two objects over one partition log, one run cache and one state machine.
Leases, the ready queues and the timers are in memory only (docs/internals.md, "Runs"): a
dispatch costs no fsync, and after a restart every non-final run is pending again, so opening
queues every non-final run and sets its timers again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import structlog

from trine_core import StorageError, get_logger
from trine_engine import metrics
from trine_engine.backend import EngineBackend
from trine_engine.builds import BuildBook, pin_of
from trine_engine.clock import Clock, SystemClock
from trine_engine.config import EngineConfig
from trine_engine.dispatcher import EngineDispatcher
from trine_engine.inspection import EngineStats, RunSnapshot
from trine_engine.kept_signals import KeptSignalLimits
from trine_engine.leases import LeaseTable
from trine_engine.machine import StateMachine
from trine_engine.retention import Retention
from trine_engine.run_state import RunCache
from trine_engine.scheduler import Scheduler
from trine_engine.storage import PartitionLog, Store
from trine_engine.storage.keys import FORMAT_VERSION
from trine_engine.timers import Timers
from trine_engine.ulid import UlidGenerator
from trine_proto.trine.engine.v1 import LogRecord
from trine_proto.trine.v1 import FunctionSpec


class Engine:
    """Build it with :meth:`open`; :meth:`close` releases the database (a reopen in the same
    process works)."""

    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        clock: Clock,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self.config = config
        self._store = store
        self._clock = clock
        self._log = log
        self._plog = PartitionLog(store, 0, log)
        self._cache = RunCache(store, config.finished_cache_size, config.run_cache_bytes)
        self._timers = Timers(clock, log)
        functions: dict[str, FunctionSpec] = {}
        builds = BuildBook()
        builds.load(store)
        self._scheduler = Scheduler(clock, self._timers, lambda state: pin_of(functions, state.run))
        self._leases = LeaseTable(self._cache, clock, self._timers, self._scheduler.requeue, log)
        self._machine = StateMachine(
            self._plog,
            self._cache,
            self._scheduler,
            self._leases,
            self._timers,
            clock,
            config.max_payload_bytes,
            log,
            functions=functions,
            builds=builds,
        )
        self._machine.load_functions(store)
        self._unwatch: Callable[[], None] = lambda: None
        self.retention = (
            Retention(store, self._cache, clock, config.retention_ms, log)
            if config.retention_ms > 0
            else None
        )
        ids = UlidGenerator()  # one per engine: its ids increase strictly
        self.backend = EngineBackend(
            self._plog,
            self._cache,
            self._machine,
            store,
            clock,
            ids,
            config.cancel_grace_ms,
            KeptSignalLimits.of(config),
        )
        self.dispatcher = EngineDispatcher(
            self._plog,
            self._cache,
            self._machine,
            self._scheduler,
            self._leases,
            clock,
            ids,
            config.lease_ttl_ms,
            log,
            max_lease_ttl_ms=config.max_lease_ttl_ms,
        )
        # Registered first: before the role's callback runs, and before the failed batch's
        # callers are answered, memory is back to what is durable and retention has stopped.
        self._plog.on_failure(self._stop_changes)

    def _stop_changes(self, _: StorageError) -> None:
        """A write failed: reads answer what is durable (the failed batch's changes were applied
        to memory already), and retention, which writes on its own, stops."""
        if self.retention is not None:
            self.retention.cancel()
        # A read failing here is logged by the store; reads meeting it answer 503 too.
        with contextlib.suppress(StorageError):
            self._cache.revert_to_durable()

    @classmethod
    async def open(
        cls,
        config: EngineConfig,
        log: structlog.stdlib.BoundLogger | None = None,
        clock: Clock | None = None,
    ) -> Engine:
        """Open (or create) the database at ``config.data_dir`` and start the timers. Raises
        StorageError, with one line naming the problem, when the data dir cannot be used."""
        log = log or get_logger("engine")
        store = Store.open(config.data_dir)
        if store.upgraded_from is not None:
            log.info(
                "storage format upgraded",
                data_dir=str(config.data_dir),
                from_format=store.upgraded_from,
                to_format=FORMAT_VERSION.decode(),
            )
        try:
            engine = cls(config, store, clock or SystemClock(), log)
            engine._resume_runs()
        except StorageError as exc:
            store.close()
            if store.damage is None:
                raise
            # a read at open met damage: the boot line names it (clients never see this one)
            raise StorageError(
                f"data dir {config.data_dir} is damaged: {store.damage}; refusing to open it "
                f"(trine check --data-dir {config.data_dir})"
            ) from exc
        except BaseException:
            store.close()
            raise
        engine._timers.start()
        if engine.retention is not None:
            engine.retention.start()
        engine._unwatch = metrics.watch(engine._cache.active, engine._scheduler.queues)
        log.info(
            "engine opened",
            data_dir=str(config.data_dir),
            active_runs=len(engine._cache.active),
            functions=len(engine._machine.functions),
            next_offset=engine._plog.next_offset,
        )
        return engine

    def _resume_runs(self) -> None:
        """Every non-final run is pending again: queue it, or wait out its retry backoff."""
        now = self._clock.now_ms()
        for state in self._cache.load_active():
            self._machine.arm(state)
            self._scheduler.make_dispatchable(state, now)

    async def close(self) -> None:
        """Write what is gathered, wake every waiter, stop the timers, log the stats, close."""
        if self._plog.closed:
            return
        self._unwatch()
        if self.retention is not None:  # first, with no await: it writes to the store directly
            self.retention.cancel()
        try:
            self._plog.close()
        finally:
            self._scheduler.wake_waiters()
            for state in list(self._cache.active.values()):
                state.wake()
            await self._timers.stop()
            if self.retention is not None:
                await self.retention.stop()
            self._log.info("engine stats", **self.stats().as_dict())
            self._store.close()

    @property
    def failed(self) -> bool:
        """A write failed: the engine accepts no more changes (reopen it)."""
        return self._plog.failure is not None

    def on_failure(self, callback: Callable[[StorageError], None]) -> None:
        """Call ``callback`` once when a write fails (or applying a record does) and the engine
        stops accepting changes; reads go on being served."""
        self._plog.on_failure(callback)

    def read_log(self, from_offset: int = 0) -> Iterator[tuple[int, LogRecord]]:
        """Partition 0's records from ``from_offset`` on, each CRC-checked: a corrupt record
        raises StorageError naming its partition and offset."""
        return self._plog.read_log(from_offset)

    def inspect(self, run_id: str) -> RunSnapshot | None:
        """The run as the engine holds it now; None unless it is in memory (an unknown id, or a
        finished run the cache let go). Reads nothing from RocksDB and changes nothing."""
        state = self._cache.peek(run_id)
        if state is None:
            return None
        return RunSnapshot.of(state, active=state.id in self._cache.active)

    def idle(self) -> bool:
        """No run is leased (no step or workflow code runs, no report is on its way under a
        lease) and none is ready to be dispatched: nothing moves until a timer fires or a
        caller acts. Two lookups, for a time-skipping clock (``trine.testing``) that asks often.

        A write still being gathered is not seen (what it makes ready is queued once it is
        durable, one turn of the event loop later): ask again after letting the loop run."""
        return not self._leases and not self._scheduler.queued

    def stats(self) -> EngineStats:
        plog = self._plog
        return EngineStats(
            active_runs=len(self._cache.active),
            blocked_runs=sum(len(held) for held in self._cache.blocked.values()),
            finished_runs_cached=self._cache.finished_count,
            leases=len(self._leases),
            queued=self._scheduler.queued,
            take_work_waiters=self._scheduler.waiters,
            timers=len(self._timers),
            next_offset=plog.next_offset,
            batches=plog.batches,
            records=plog.records,
            append_p50_ms=plog.append_latency.percentile(0.50),
            append_p99_ms=plog.append_latency.percentile(0.99),
            commit_p50_ms=plog.commit_latency.percentile(0.50),
            commit_p99_ms=plog.commit_latency.percentile(0.99),
        )
