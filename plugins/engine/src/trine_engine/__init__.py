"""trine-engine: the ``engine`` role. The partition log and derived state on RocksDB, the run
state machines, leases and dispatch; implements ``Backend`` and ``Dispatcher``."""

from trine_engine.engine import Engine
from trine_engine.partition_log import AppendBatch, PartitionLog
from trine_engine.plugin import EngineRole
from trine_engine.run_state import RunCache, RunState
from trine_engine.state_machine import StateMachine
from trine_engine.storage import Store
from trine_engine.ulid import UlidGenerator

__all__ = [
    "AppendBatch",
    "Engine",
    "EngineRole",
    "PartitionLog",
    "RunCache",
    "RunState",
    "StateMachine",
    "Store",
    "UlidGenerator",
]
