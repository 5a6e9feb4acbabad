"""``MemoryEngine``: the read side (:mod:`.reads`) and the report side (:mod:`.reports`) over one
state (:mod:`.runs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from trine_core.protocols import Backend, Dispatcher
from trine_core.settings import MAX_PAYLOAD_BYTES
from trine_core.testing.memory.reads import Reads
from trine_core.testing.memory.reports import Reports
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import now_ms


class MemoryEngine(Reads, Reports):
    """Both contracts over one in-memory state (see :mod:`trine_core.testing.memory`).
    ``backend`` and ``dispatcher`` are this object, typed as the contract a consumer needs."""

    def __init__(
        self,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES.default,
        *,
        functions: Iterable[pb.FunctionSpec] = (),
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(max_payload_bytes, functions, clock)
        self.backend: Backend = self
        self.dispatcher: Dispatcher = self
