"""Rules for names that cross every role, raised as :class:`InvalidArgument`. The rules
themselves are in :mod:`trine_proto.vocabulary`, shared with the worker SDK; the engine (the
authority) and the gateway (before it makes a call) check them here."""

from __future__ import annotations

from trine_core.errors import InvalidArgument
from trine_proto.vocabulary import MAX_SIGNAL_NAME, signal_name_problem

__all__ = ["MAX_SIGNAL_NAME", "check_signal_name"]


def check_signal_name(name: str) -> None:
    """Raise InvalidArgument, naming the problem, unless ``name`` is a valid signal name."""
    problem = signal_name_problem(name)
    if problem is not None:
        raise InvalidArgument(problem, signal=name)
