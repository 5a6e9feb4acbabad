"""The journal as a replay cursor: which recorded entry answers the workflow's next call, and
what that entry means to the workflow.

Replay is only sound if a re-executed workflow makes the same calls in the same order, so the
cursor checks every call against what was recorded at its position before trusting the entry.
It keeps no other state: it raises what the workflow must see (a non-determinism, a journaled
cancellation, a journaled error) and leaves remembering it to the attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trine_proto.trine.v1 import EntryKind, JournalEntry
from trine_proto.vocabulary import ErrorType

from . import _codec
from .errors import CancelledError, ChildRunError, NonDeterminismError, SignalTimeout, StepError

_KIND_WORDS = {
    EntryKind.STEP: "step",
    EntryKind.SLEEP: "sleep",
    EntryKind.SIGNAL: "signal wait",
    EntryKind.CHILD: "child run",
    EntryKind.CANCEL: "cancellation",
    EntryKind.EMIT: "event",
}


def describe(kind: EntryKind, name: str) -> str:
    """How a journaled call reads in an error: ``step 'charge'``, ``sleep``."""
    word = _KIND_WORDS.get(kind, "call")
    return word if kind == EntryKind.SLEEP else f"{word} {name!r}"


class Journal:
    """The entries an attempt was dispatched with, and the position of the workflow's next call.

    ``step_attempts`` are the attempts already made of steps that failed and are being retried,
    by journal position: they are not entries yet, but the next attempt's number depends on them.
    """

    def __init__(self, entries: list[JournalEntry], step_attempts: dict[int, int]) -> None:
        self._entries = entries
        self._step_attempts = step_attempts
        self._next_index = 0

    @property
    def replaying(self) -> bool:
        """True while the workflow is still re-walking calls the journal already holds."""
        return self._next_index < len(self._entries)

    def step_attempt(self, index: int) -> int:
        """The number of the attempt a step at ``index`` is about to make, from 1."""
        return self._step_attempts.get(index, 0) + 1

    def next(self, kind: EntryKind, name: str) -> tuple[int, JournalEntry | None]:
        """Take the next journal position for a call; its entry when the journal has it.

        Raises ``NonDeterminismError`` when the journal recorded a different call there, and
        ``CancelledError`` where a cancellation was observed."""
        index = self._next_index
        self._next_index += 1
        if index >= len(self._entries):
            return index, None
        entry = self._entries[index]
        if entry.kind == EntryKind.CANCEL:
            raise CancelledError(entry.error.message if entry.error else "the run was cancelled")
        if entry.kind != kind or entry.name != name:
            raise NonDeterminismError(index, describe(entry.kind, entry.name), describe(kind, name))
        return index, entry


def entry_value(entry: JournalEntry, decode: Callable[[bytes], Any] = _codec.decode) -> Any:
    """A resolved entry's value (its output through ``decode``), or its error raised as the
    workflow should see it."""
    error = entry.error
    if error is None:
        return None if entry.kind == EntryKind.SLEEP else decode(entry.output)
    if error.type == ErrorType.CANCELLED:  # this run's own (a child's is ChildCancelled)
        raise CancelledError(error.message)
    if entry.kind == EntryKind.SIGNAL and error.type == ErrorType.SIGNAL_TIMEOUT:
        raise SignalTimeout(entry.name, error.message)
    if entry.kind == EntryKind.CHILD:
        raise ChildRunError(
            entry.child_run_id, entry.name, error.type, error.message, error.traceback
        )
    raise StepError(entry.name, entry.index, error.type, error.message, error.traceback)
