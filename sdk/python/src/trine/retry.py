"""Retry policies, in seconds for authors and in milliseconds on the wire.

The engine applies the policy (it schedules the retry durably and frees the worker slot while the
run waits), so the SDK only describes it: per function at registration, per step in ``StepFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trine_proto.retry import (
    DEFAULT_BACKOFF_COEFFICIENT,
    DEFAULT_INITIAL_INTERVAL_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_INTERVAL_MS,
)
from trine_proto.trine.v1 import RetryPolicy as RetryPolicyProto
from trine_proto.vocabulary import seconds_to_ms


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing step is tried, and how long to wait between tries.

    ``max_attempts`` counts the first try (1 means no retry). The n-th retry waits
    ``initial_interval * backoff_coefficient ** (n - 1)`` seconds, at most ``max_interval``.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_interval: float = DEFAULT_INITIAL_INTERVAL_MS / 1000
    max_interval: float = DEFAULT_MAX_INTERVAL_MS / 1000
    backoff_coefficient: float = DEFAULT_BACKOFF_COEFFICIENT

    def __post_init__(self) -> None:
        # Refuse nonsense where it is written, not when a step first fails in production.
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("retry intervals cannot be negative")
        if self.backoff_coefficient < 1:
            raise ValueError(
                f"backoff_coefficient must be at least 1, not {self.backoff_coefficient}"
            )

    def to_proto(self) -> RetryPolicyProto:
        """The wire form, in milliseconds as every duration the SDK sends (``seconds_to_ms``)."""
        return RetryPolicyProto(
            max_attempts=self.max_attempts,
            initial_interval_ms=seconds_to_ms(self.initial_interval),
            max_interval_ms=seconds_to_ms(self.max_interval),
            backoff_coefficient=self.backoff_coefficient,
        )
