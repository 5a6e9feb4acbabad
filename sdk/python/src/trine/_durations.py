"""Durations as a workflow author writes them (seconds or a ``timedelta``), checked where they
are written.

A bad duration is refused at the call that passed it, with the call named, rather than sent on
to be refused by the engine far from its cause. Turning seconds into the milliseconds the
messages carry is ``trine_proto.vocabulary.seconds_to_ms``, the same for every component.
"""

from __future__ import annotations

import math
from datetime import timedelta


def seconds(value: float | timedelta, what: str) -> float:
    """``value`` in seconds; ``ValueError`` naming ``what`` unless it is finite and >= 0."""
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, not {value!r}")
    return result
