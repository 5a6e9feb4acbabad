"""trine-engine: the ``engine`` role. The partition log and derived state on RocksDB, the run
state machines, leases and dispatch: :class:`Engine` opens them and holds a ``Backend`` and a
``Dispatcher``. The role plugin (``trine_engine.plugin``, loaded through its entry point) is not
imported here, so the engine can be used and tested without the runtime's boot machinery."""

from trine_engine.clock import Clock, ManualClock, SystemClock
from trine_engine.config import EngineConfig
from trine_engine.engine import Engine
from trine_engine.partition_log import AppendBatch, PartitionLog
from trine_engine.run_state import RunCache, RunState
from trine_engine.state_machine import StateMachine
from trine_engine.storage import Store
from trine_engine.ulid import UlidGenerator

__all__ = [
    "AppendBatch",
    "Clock",
    "Engine",
    "EngineConfig",
    "ManualClock",
    "PartitionLog",
    "RunCache",
    "RunState",
    "StateMachine",
    "Store",
    "SystemClock",
    "UlidGenerator",
]
