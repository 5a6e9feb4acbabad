"""Upgrading a database of an older storage format, once, when it is opened.

Format 1 did not store a run's failed step attempts or the signals it kept: every restart rebuilt
them by parsing the JSON of the run's ``step.failed`` and ``signal.received`` events. Format 2
stores them as rows (``attempts``, ``signals``) written with the records that change them. The
upgrade rebuilds them the old way one last time, for the active runs (an ended run has none), and
writes them with the new format version in one batch: a crash midway leaves format 1, upgraded
again at the next open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from trine_engine.storage.keys import (
    ACTIVE,
    ATTEMPTS,
    EVENTS,
    FORMAT_KEY,
    JOURNAL,
    META,
    RUNS,
    SIGNALS,
    encode_u32,
    run_prefix,
    run_row_key,
)
from trine_proto.codec import decode, encode
from trine_proto.trine.engine.v1 import KeptSignal
from trine_proto.trine.v1 import EntryKind, Event, JournalEntry, Run
from trine_proto.vocabulary import EventType, is_final

if TYPE_CHECKING:
    from trine_engine.storage.store import Store


def from_format_1(store: Store) -> None:
    batch = store.new_batch()
    for key, _ in store.scan(ACTIVE):
        raw = store.get(RUNS, key)
        if raw is None or is_final(decode(Run, raw).status):
            continue
        run_id = key.decode()
        prefix = run_prefix(run_id)
        events = [decode(Event, v) for _, v in store.scan(EVENTS, prefix=prefix)]
        journal = [decode(JournalEntry, v) for _, v in store.scan(JOURNAL, prefix=prefix)]
        for index, attempt in _step_attempts(events).items():
            store.put(batch, ATTEMPTS, run_row_key(run_id, index), encode_u32(attempt))
        for event, payload in _kept_signals(events, journal):
            kept = KeptSignal(name=event.name, payload=payload)
            store.put(batch, SIGNALS, run_row_key(run_id, event.seq), encode(kept))
    store.put(batch, META, FORMAT_KEY, b"2")
    store.write(batch)


def _step_attempts(events: list[Event]) -> dict[int, int]:
    """The highest failed attempt of each step, from its ``step.failed`` events."""
    attempts: dict[int, int] = {}
    for event in events:
        if event.type == EventType.STEP_FAILED:
            data = json.loads(event.data)
            index, attempt = int(data["index"]), int(data["attempt"])
            attempts[index] = max(attempts.get(index, 0), attempt)
    return attempts


def _kept_signals(
    events: list[Event], journal: list[JournalEntry]
) -> Iterator[tuple[Event, bytes]]:
    """The ``signal.received`` events no wait took, with their payloads. Waits take the signals
    of a name oldest first, so the first *n* received are the ones the *n* signal waits resolved
    by a signal (not by a timeout or a cancellation) took."""
    taken: dict[str, int] = {}
    for entry in journal:
        if entry.kind == EntryKind.SIGNAL and not entry.pending and entry.error is None:
            taken[entry.name] = taken.get(entry.name, 0) + 1
    for event in events:
        if event.type != EventType.SIGNAL_RECEIVED:
            continue
        if taken.get(event.name, 0) > 0:
            taken[event.name] -= 1
            continue
        payload = json.loads(event.data)["payload"]
        yield event, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
