"""Rules for names and spans that cross every role, raised as :class:`InvalidArgument`. The
rules themselves are in :mod:`trine_proto.vocabulary`, shared with the worker SDK; the engine (the
authority) and the gateway (before it makes a call) check them here."""

from __future__ import annotations

from trine_core.errors import InvalidArgument
from trine_proto.vocabulary import (
    MAX_DURATION_MS,
    MAX_SIGNAL_NAME,
    duration_problem,
    signal_name_problem,
)

__all__ = ["MAX_DURATION_MS", "MAX_SIGNAL_NAME", "check_duration", "check_signal_name"]


def check_signal_name(name: str) -> None:
    """Raise InvalidArgument, naming the problem, unless ``name`` is a valid signal name."""
    problem = signal_name_problem(name)
    if problem is not None:
        raise InvalidArgument(problem, signal=name)


def check_duration(ms: int, what: str) -> int:
    """``ms``, unless it is longer than :data:`MAX_DURATION_MS`: then InvalidArgument naming
    ``what`` (say, ``"the sleep at step 3"``) and both figures."""
    problem = duration_problem(ms, what)
    if problem is not None:
        raise InvalidArgument(problem)
    return ms
