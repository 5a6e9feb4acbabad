"""The journal as a replay cursor: which recorded entry answers the workflow's next call, and
what that entry means to the workflow.

Replay is only sound if a re-executed workflow makes the same calls in the same order, so the
cursor checks every call against what was recorded at its position before trusting the entry.
It keeps no other state: it raises what the workflow must see (a non-determinism, a journaled
cancellation, a journaled error) and leaves remembering it to the attempt.
"""

from __future__ import annotations

import json
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
    EntryKind.PATCH: "patch",
}

# How to make a changed workflow safe for runs in flight (docs/versioning.md), for the errors.
_GUARD_NEW = (
    'If {got} is new, guard the new code with `if ctx.patched("<id>"):` (runs that passed '
    "this point without it keep the old path); if {expected} was removed or changed, keep the "
    'old call for runs that made it (`if not ctx.patched("<id>"):`)'
)
_KEEP_PATCH = (
    "This run took the new path of change {change!r} here: keep `if ctx.patched({quoted}):` at "
    "this point (or `ctx.deprecate_patch({quoted})` once no run takes the old path)"
)


def describe(kind: EntryKind, name: str) -> str:
    """How a journaled call reads in an error: ``step 'charge'``, ``sleep``."""
    word = _KIND_WORDS.get(kind, "call")
    return word if kind == EntryKind.SLEEP else f"{word} {name!r}"


def mismatch(index: int, recorded: JournalEntry, kind: EntryKind, name: str) -> NonDeterminismError:
    """The error for a call that disagrees with the entry the journal ``recorded`` at ``index``:
    both calls, and how to make the change safe."""
    expected, got = describe(recorded.kind, recorded.name), describe(kind, name)
    if recorded.kind == EntryKind.PATCH:
        quoted = json.dumps(recorded.name)
        hint = _KEEP_PATCH.format(change=recorded.name, quoted=quoted)
    else:
        hint = _GUARD_NEW.format(got=got, expected=expected)
    return NonDeterminismError(index, expected, got, hint)


def past_the_end(index: int, why: str, kind: EntryKind, name: str) -> NonDeterminismError:
    """The error for a call past the end of a finished run's journal (a history replayed): the
    run ended ``why`` (``completed``) without making it."""
    got = describe(kind, name)
    hint = (
        f'If {got} is new, guard the new code with `if ctx.patched("<id>"):` (a finished '
        "run's replay takes the old path past its journal)"
    )
    return NonDeterminismError(index, f"the end of the journal (the run {why} there)", got, hint)


class Journal:
    """The entries an attempt was dispatched with, and the position of the workflow's next call.

    ``step_attempts`` are the attempts already made of steps that failed and are being retried,
    by journal position: they are not entries yet, but the next attempt's number depends on them.

    A position past the end of the journal is a first execution: the call runs for real and
    ``patched`` takes the new path. A replay of an exported history (``trine.testing.replay``)
    changes that by overriding ``past_end`` and ``patch_past_end``.
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
            self.past_end(index, kind, name)
            return index, None
        entry = self._entries[index]
        if entry.kind == EntryKind.CANCEL:
            raise CancelledError(entry.error.message if entry.error else "the run was cancelled")
        if entry.kind != kind or entry.name != name:
            raise mismatch(index, entry, kind, name)
        return index, entry

    def patch(self, change_id: str) -> tuple[int, bool, bool]:
        """``ctx.patched`` at the next position: ``(index, new_path, journal_marker)``.

        Past the end of the journal the position is taken and the new path chosen, to be
        journaled as a marker; where the journal holds this change's marker it is consumed (new
        path, nothing to journal); anywhere else nothing is consumed and the old path runs, as
        it did when the journal was written."""
        index = self._next_index
        if index >= len(self._entries):
            if not self.patch_past_end():
                return index, False, False
            self._next_index += 1
            return index, True, True
        entry = self._entries[index]
        if entry.kind == EntryKind.PATCH and entry.name == change_id:
            self._next_index += 1
            return index, True, False
        return index, False, False

    def deprecate_patch(self, change_id: str) -> None:
        """``ctx.deprecate_patch``: consume this change's marker when the journal holds it at
        the next position; nothing else (no position is taken past the end)."""
        index = self._next_index
        if index < len(self._entries):
            entry = self._entries[index]
            if entry.kind == EntryKind.PATCH and entry.name == change_id:
                self._next_index += 1

    # -- past the end: a first execution, unless a history is replayed -----------------------------

    def past_end(self, index: int, kind: EntryKind, name: str) -> None:
        """A call at ``index``, past the journal: here it runs for real. A replay of a history
        raises instead (the call must not run)."""

    def patch_past_end(self) -> bool:
        """Whether ``patched`` past the journal takes the new path (a first execution does; a
        finished run's replay takes the old one, as the code that wrote it did)."""
        return True


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
