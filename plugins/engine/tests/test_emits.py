"""``ctx.emit``'s command: journaled at its index and published in the same commit, once; an Emit
for an index that already journals it (a worker sending it again) is acknowledged without a
second event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trine_core import InvalidArgument, PayloadTooLarge
from trine_proto.trine.v1 import EntryKind, GetJournalRequest, ReportOutcome

Harness = Any


def customs(events: list[Any]) -> list[tuple[int, str, Any]]:
    return [(e.seq, e.name, json.loads(e.data)) for e in events if e.type == "custom"]


async def test_an_emit_is_journaled_and_published_once(h: Harness) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    answer = await h.report(item, h.emit("progress", b'{"pct":50}', index=0))
    assert answer.outcome == ReportOutcome.CONTINUE
    again = await h.report(item, h.emit("progress", b'{"pct":50}', index=0))  # sent again
    assert again.outcome == ReportOutcome.CONTINUE
    await h.report(item, h.started(1, "a"), h.completed(1, "a"))
    # Again, after later entries, and twice within one report: still nothing new.
    await h.report(item, h.emit("progress", b'{"pct":50}', index=0), h.emit("done", b"1", index=2))
    await h.report(item, h.emit("done", b"1", index=2), h.finish())

    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.kind, e.name, e.output) for e in journal] == [
        (0, EntryKind.EMIT, "progress", b'{"pct":50}'),
        (1, EntryKind.STEP, "a", b"1"),
        (2, EntryKind.EMIT, "done", b"1"),
    ]
    assert not journal[0].pending
    assert journal[0].started_at_ms == journal[0].ended_at_ms == h.clock.now_ms()
    events = await h.events(run.id)
    assert customs(events) == [(2, "progress", {"pct": 50}), (5, "done", 1)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_retried_run_is_dispatched_with_its_emits_in_the_journal(h: Harness) -> None:
    """What lets the next attempt skip the emit: it is in the journal the run is replayed from,
    also after a restart."""
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.emit("before", b'"x"', index=0))
    retried = await h.report(item, h.started(1, "flaky"), h.failed(1, "flaky"))
    assert retried.outcome == ReportOutcome.RETRY_SCHEDULED
    await h.reopen()
    h.clock.advance(60_000)  # past the backoff: the timer puts it in line
    again = await h.take_one(wait_ms=5_000)
    assert again.run.id == run.id
    assert [(e.index, e.kind, e.name, e.output) for e in again.journal] == [
        (0, EntryKind.EMIT, "before", b'"x"')
    ]
    assert again.step_attempts == {1: 1}
    await h.report(again, h.started(1, "flaky", attempt=2), h.completed(1, "flaky"), h.finish())
    assert customs(await h.events(run.id)) == [(2, "before", "x")]


@pytest.mark.parametrize(
    ("index", "name"),
    [(1, "progress"), (0, "other"), (5, "progress")],
    ids=["step-there", "another-event-there", "past-the-end"],
)
async def test_an_emit_that_does_not_fit_the_journal_is_refused_and_changes_nothing(
    h: Harness, index: int, name: str
) -> None:
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.emit("progress", b"1", index=0), h.started(1, "a"), h.completed(1, "a"))
    before = h.inspect(run.id)
    with pytest.raises(InvalidArgument, match="does not follow"):
        await h.report(item, h.started(2, "b"), h.emit(name, b"2", index=index))
    after = h.inspect(run.id)
    assert (after.journal, after.events) == (before.journal, before.events)


async def test_an_emit_over_the_payload_limit_is_refused(h: Harness, config: Any) -> None:
    await h.register()
    await h.start()
    item = await h.take_one()
    with pytest.raises(PayloadTooLarge):
        await h.report(item, h.emit("big", b"1" * (config.max_payload_bytes + 1), index=0))


async def test_an_emit_without_an_index_is_published_but_not_journaled(h: Harness) -> None:
    """As an SDK from before journaled emits sends it (and as old log records hold it)."""
    await h.register()
    run = await h.start()
    item = await h.take_one()
    await h.report(item, h.emit("legacy", b"1"), h.started(0, "a"), h.completed(0, "a"))
    await h.report(item, h.finish())
    journal = (await h.backend.get_journal(GetJournalRequest(run_id=run.id))).entries
    assert [(e.index, e.kind) for e in journal] == [(0, EntryKind.STEP)]
    assert customs(await h.events(run.id)) == [(2, "legacy", 1)]
