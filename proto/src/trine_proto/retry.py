"""Step retry policies: which one applies, and when the next attempt may start.

One definition for every component: the engine schedules retries with it, core's reference
implementation mirrors the engine with it, and the worker SDK takes its defaults from it.

No jitter: the retry time is part of the log's derived state and must follow from the record alone
(its timestamp, the attempt, the policy), so applying a record twice gives the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trine_proto.trine.v1 import RetryPolicy

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_INTERVAL_MS = 100
DEFAULT_BACKOFF_COEFFICIENT = 2.0
DEFAULT_MAX_INTERVAL_MS = 10_000


@dataclass(frozen=True, slots=True)
class Policy:
    """A RetryPolicy with every unset (zero) field replaced by its default."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_interval_ms: int = DEFAULT_INITIAL_INTERVAL_MS
    backoff_coefficient: float = DEFAULT_BACKOFF_COEFFICIENT
    max_interval_ms: int = DEFAULT_MAX_INTERVAL_MS

    @classmethod
    def of(cls, message: RetryPolicy) -> Policy:
        return cls(
            max_attempts=message.max_attempts or DEFAULT_MAX_ATTEMPTS,
            initial_interval_ms=message.initial_interval_ms or DEFAULT_INITIAL_INTERVAL_MS,
            backoff_coefficient=message.backoff_coefficient or DEFAULT_BACKOFF_COEFFICIENT,
            max_interval_ms=message.max_interval_ms or DEFAULT_MAX_INTERVAL_MS,
        )

    def delay_ms(self, attempt: int) -> int:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        try:
            delay = self.initial_interval_ms * self.backoff_coefficient**exponent
        except OverflowError:
            delay = float(self.max_interval_ms)
        if math.isnan(delay):  # a NaN coefficient
            return self.max_interval_ms
        # A negative coefficient must not schedule into the past (or below 0, once stored).
        return int(min(max(delay, 0.0), self.max_interval_ms))


def effective(step: RetryPolicy | None, function: RetryPolicy | None) -> Policy:
    """The step's own policy, else the function's, else the default."""
    if step is not None:
        return Policy.of(step)
    if function is not None:
        return Policy.of(function)
    return Policy()
