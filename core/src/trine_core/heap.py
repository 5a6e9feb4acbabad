"""The cyclic garbage collector, set for a long-lived server once its process has booted.

Why: the runtime makes next to no cyclic garbage (over 500 runs in ``all``, a collector that kept
every cycle it found, ``gc.DEBUG_SAVEALL``, kept none), yet with CPython's defaults it collected
all the time. For 2,000 runs at concurrency 100 (``bench/throughput.py``, ``all``; the
collector's callbacks timed with ``time.thread_time``) the engine's process spent about 0.4 s of
its 4 s of CPU collecting, and each of its 5 full collections took 50-100 ms of CPU, with every
role on the loop stopped (the journal's append p99 was 74 ms). A full collection walks every
tracked object, and 95,000 of the 138,000 at the end were made by the boot (modules, classes,
the HTTP app) and live until the process ends.

So, once booted: one collection, then :func:`gc.freeze` moves what survives out of the
collector's sight (a full collection then took 17-28 ms), and the youngest generation is
collected after :data:`GEN0_THRESHOLD` net new objects instead of 700. Measured after the boot,
in the same run: 411 young, 37 middle and 3 full collections, 272 ms in all, with the freeze
alone; 11 young collections (median 6.7 ms, at most 8 ms), 66 ms in all, with both. What is
frozen is never collected: a boot object that later becomes part of a garbage cycle stays in
memory. Only the ``trine`` program does this: a process that embeds the runtime
(``trine.testing``, a test) keeps its own collector settings (the engine's switch interval,
``SWITCH_INTERVAL_S``, is process-wide all the same).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000
"""Net new container objects between two collections of the youngest generation (CPython: 700).
Raised to it, never lowered: a process already set higher keeps its setting. A collection's
pause grows with it (50,000 gave one collection of 19 ms where 10,000 gave 8 ms at most)."""


def settle_after_boot() -> None:
    """Collect what the boot left, freeze what survives, and raise the youngest generation's
    threshold (the module docstring says why). Called once, after every role has started."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GEN0_THRESHOLD), middle, old)
