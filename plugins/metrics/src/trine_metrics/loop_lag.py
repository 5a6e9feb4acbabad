"""How late this process's event loop runs what is ready: the one figure that shows a role
starving the others.

Every role of a process shares one event loop (``--target=all`` runs them all on it), and a
callback that is ready waits for every callback queued before it. A timer due every
:data:`TICK_S` measures that wait: how much later than due it ran is the time anything ready at
that moment waited too (a heartbeat read, a dispatch, a commit's answer). Cheap: ten wake-ups a
second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trine_core.instruments import REGISTRY

TICK_S = 0.1
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG = REGISTRY.histogram(
    "trine_event_loop_lag_seconds",
    f"How late this process's event loop ran a timer due every {TICK_S:g} s: the time a ready "
    "callback (a heartbeat read, a dispatch, a commit's answer) waited behind the others. "
    "Every role of a process shares the loop.",
    (),
    LAG_BUCKETS,
)


class LoopLagSampler:
    """Observes the lag of the running loop (into :data:`LOOP_LAG`, unless given another
    ``observe``) from :meth:`start` to :meth:`stop`."""

    def __init__(self, observe: Callable[[float], None] | None = None, tick_s: float = TICK_S):
        self._observe = observe or LOOP_LAG.observe
        self._tick_s = tick_s
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._tick_s
            await asyncio.sleep(self._tick_s)
            self._observe(max(0.0, loop.time() - due))
