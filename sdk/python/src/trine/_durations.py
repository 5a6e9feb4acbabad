"""Durations as a workflow author writes them (seconds or a ``timedelta``), checked where they
are written.

A bad duration is refused at the call that passed it, with the call named, rather than sent on
to be refused by the engine far from its cause. Turning seconds into the milliseconds the
messages carry is ``trine_proto.vocabulary.seconds_to_ms``, the same for every component.
"""

from __future__ import annotations

import math
from datetime import timedelta

from trine_proto.vocabulary import duration_problem, seconds_to_ms


def seconds(value: float | timedelta, what: str) -> float:
    """``value`` in seconds; ``ValueError`` naming ``what`` unless it is finite and >= 0."""
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, not {value!r}")
    return result


def span(value: float | timedelta, what: str) -> float:
    """:func:`seconds`, and at most 100 years (``MAX_DURATION_MS``): the engine refuses a longer
    sleep or timeout, which would fail the run far from the call."""
    result = seconds(value, what)
    problem = duration_problem(seconds_to_ms(result), what)
    if problem is not None:
        raise ValueError(problem)
    return result
