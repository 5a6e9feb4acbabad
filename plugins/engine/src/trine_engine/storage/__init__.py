"""Where the engine's state lives: the RocksDB database (:class:`Store`), its format and key
layouts (``keys``), and the partition log written into it (:class:`PartitionLog`)."""

from trine_engine.storage.partition_log import AppendBatch, PartitionLog
from trine_engine.storage.store import Store

__all__ = ["AppendBatch", "PartitionLog", "Store"]
