"""trine-engine: the ``engine`` role. The partition log and derived state on RocksDB, the run
state machines, leases and dispatch: :meth:`Engine.open` gives an engine whose ``backend`` and
``dispatcher`` serve the two contracts. The role plugin (``trine_engine.plugin``, loaded through
its entry point) is not imported here, so the engine can be used and tested without the runtime's
boot machinery."""

from trine_engine.backend import EngineBackend
from trine_engine.clock import Clock, ManualClock, SystemClock
from trine_engine.config import EngineConfig
from trine_engine.dispatcher import EngineDispatcher
from trine_engine.engine import Engine
from trine_engine.inspection import EngineStats, RunSnapshot
from trine_engine.leases import Lease
from trine_engine.storage import Store

__all__ = [
    "Clock",
    "Engine",
    "EngineBackend",
    "EngineConfig",
    "EngineDispatcher",
    "EngineStats",
    "Lease",
    "ManualClock",
    "RunSnapshot",
    "Store",
    "SystemClock",
]
