"""A bounded ring of latency samples: recent percentiles at a fixed memory cost.

Kept deliberately simple (sort on read): it is read once per ``stats()`` call, written once per
append, and a few thousand floats sort in well under a millisecond.
"""

from __future__ import annotations

from collections import deque


class LatencyRing:
    def __init__(self, capacity: int = 8192) -> None:
        self._samples: deque[float] = deque(maxlen=capacity)

    def add(self, milliseconds: float) -> None:
        self._samples.append(milliseconds)

    def percentile(self, fraction: float) -> float:
        """The sample at ``fraction`` (0..1) of the sorted window; 0.0 when there is none."""
        if not self._samples:
            return 0.0
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
        return round(ordered[index], 3)
