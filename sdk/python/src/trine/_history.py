"""Exported run histories (``GET /v1/runs/{id}/history``, format ``trine.history/1``) read back
for a replay check (``trine.testing.replay``), and the journal cursor such a replay runs on.

A history is the run and its journal exactly as the API shows them (JSON payloads, ISO times,
kind names); reading one gives back the ``JournalEntry`` messages a worker is dispatched with, so
the replay walks them with the worker's own cursor and rules. Only what happens *past the end* of
the journal differs from a worker's replay: nothing may run for real there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trine_proto.trine.v1 import EntryKind, ErrorInfo, JournalEntry

from ._journal import Journal, past_the_end
from .errors import AttemptEnded

HISTORY_FORMAT = "trine.history/1"

# What a history may be given as: its dict, its JSON text (str or bytes), or a path to its file.
HistorySource = Mapping[str, Any] | str | bytes | os.PathLike[str]

_ENTRY_KINDS = {
    "step": EntryKind.STEP,
    "sleep": EntryKind.SLEEP,
    "signal": EntryKind.SIGNAL,
    "child": EntryKind.CHILD,
    "cancel": EntryKind.CANCEL,
    "emit": EntryKind.EMIT,
    "patch": EntryKind.PATCH,
}
# A run in one of these ended: its journal is all it will ever hold.
FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class History:
    """One run's history: where it came from (for errors), the run's id, function, status,
    attempt and input (JSON bytes), and its journal as the entries a worker is dispatched with."""

    source: str
    run_id: str
    function: str
    status: str
    attempt: int
    input: bytes
    entries: list[JournalEntry]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def load(sources: HistorySource | Sequence[HistorySource]) -> list[History]:
    """Every history in ``sources`` (one, or a list of them); ``ValueError`` naming the history
    and the problem for one this SDK cannot read."""
    if isinstance(sources, Sequence) and not isinstance(sources, str | bytes):
        return [history for source in sources for history in load(source)]
    document, where = _document(sources)
    if isinstance(document, list):
        return [_parse(item, f"{where}[{n}]") for n, item in enumerate(document)]
    return [_parse(document, where)]


def _document(source: HistorySource) -> tuple[Any, str]:
    """The JSON document of ``source`` and how to name it in an error."""
    if isinstance(source, Mapping):
        return source, "the history"
    if isinstance(source, bytes):
        return _json(source, "the history's JSON"), "the history"
    text = os.fspath(source)
    if isinstance(source, str) and text.lstrip()[:1] in ("{", "["):
        return _json(text, "the history's JSON"), "the history"
    path = Path(text)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the history {text!r}: {error}") from error
    return _json(data, f"the history {text!r}"), f"the history {text!r}"


def _json(data: str | bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ValueError(f"{what} is not JSON: {error}") from error


def _parse(document: Any, where: str) -> History:
    if not isinstance(document, Mapping):
        raise ValueError(f"{where} is not a JSON object but {type(document).__name__}")
    format_ = document.get("format")
    if format_ != HISTORY_FORMAT:
        raise ValueError(
            f"{where} has the format {format_!r}, which this SDK cannot read: it reads "
            f"{HISTORY_FORMAT!r} (GET /v1/runs/{{id}}/history)"
        )
    run = document.get("run")
    journal = document.get("journal")
    if not isinstance(run, Mapping) or not isinstance(run.get("function"), str):
        raise ValueError(f"{where} has no run with a function")
    if not isinstance(journal, list):
        raise ValueError(f"{where} has no journal list")
    run_id = str(run.get("id") or "")
    where = f"{where} (run {run_id})" if run_id else where
    return History(
        source=where,
        run_id=run_id,
        function=run["function"],
        status=str(run.get("status") or ""),
        attempt=int(run.get("attempt") or 1),
        input=_payload(run.get("input")),
        entries=[_entry(item, position, where) for position, item in enumerate(journal)],
    )


def _entry(item: Any, position: int, where: str) -> JournalEntry:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: journal entry {position} is not a JSON object")
    kind = _ENTRY_KINDS.get(item.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(
            f"{where}: journal entry {position} has the kind {item.get('kind')!r}; the kinds "
            f"are {', '.join(_ENTRY_KINDS)}"
        )
    error = item.get("error")
    return JournalEntry(
        index=int(item.get("index", position)),
        kind=kind,
        name=str(item.get("name") or ""),
        input_digest=str(item.get("input_digest") or ""),
        output=b"" if error else _payload(item.get("output")),
        error=_error(error) if error else None,
        attempt=int(item.get("attempt") or 0),
        pending=bool(item.get("pending")),
        child_run_id=str(item.get("child_run_id") or ""),
    )


def _payload(value: Any) -> bytes:
    """A JSON value as the bytes a journal holds (compact, as the SDK writes them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _error(error: Mapping[str, Any]) -> ErrorInfo:
    return ErrorInfo(
        type=str(error.get("type") or ""),
        message=str(error.get("message") or ""),
        traceback=str(error.get("traceback") or ""),
    )


class HistoryJournal(Journal):
    """The cursor of a history's replay: the journal is walked exactly as a worker walks it,
    but no call past its end runs. For a finished run those positions count as held: ``patched``
    takes the old path, as the code that wrote the history did, a call past the end of a
    completed run's journal is a non-determinism (that run completed without it), and one past
    the end of a failed or cancelled run's journal ends the replay (the run stopped there). For
    a run not finished, the replay ends at its first call past the journal, or at a wait still
    pending."""

    def __init__(self, history: History) -> None:
        super().__init__(history.entries, {})
        self._status = history.status
        self._finished = history.finished

    def next(self, kind: EntryKind, name: str) -> tuple[int, JournalEntry | None]:
        index, entry = super().next(kind, name)
        if entry is not None and entry.pending:
            raise AttemptEnded(f"the run waits at journal position {index}")
        return index, entry

    def past_end(self, index: int, kind: EntryKind, name: str) -> None:
        if self._status == "completed":
            raise past_the_end(index, "completed", kind, name)
        raise AttemptEnded(f"the journal ends at position {index}")

    def patch_past_end(self) -> bool:
        return not self._finished

    @property
    def position(self) -> int:
        """The position of the code's next call."""
        return self._next_index
