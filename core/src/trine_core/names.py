"""Rules for names that cross every role: one definition, checked by the engine (the authority)
and by the gateway before it makes a call."""

from __future__ import annotations

import re

from trine_core.errors import InvalidArgument

MAX_SIGNAL_NAME = 200
SIGNAL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
"""A signal name is a URL path segment (``/v1/runs/{id}/signals/{name}``), so it is kept to
characters that need no escaping."""


def check_signal_name(name: str) -> None:
    """Raise InvalidArgument, naming the problem, unless ``name`` is a valid signal name."""
    if not 1 <= len(name) <= MAX_SIGNAL_NAME:
        raise InvalidArgument(
            f"a signal name is 1 to {MAX_SIGNAL_NAME} characters, not {len(name)}",
            length=len(name),
        )
    if SIGNAL_NAME.fullmatch(name) is None:
        bad = sorted({c for c in name if SIGNAL_NAME.fullmatch(c) is None})
        raise InvalidArgument(
            f"a signal name is made of ASCII letters, digits and _ . : -; "
            f"{name!r} has {''.join(bad)!r}",
            signal=name,
        )
