"""Storage format 2 keeps each active run's failed step attempts and kept signals as rows; a
format-1 database (which rebuilt them from the events at every restart) is upgraded once, at
open, and its runs resume with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict
from structlog.testing import capture_logs

from trine_engine import Store
from trine_engine.storage.keys import ATTEMPTS, FAMILIES, META, SIGNALS
from trine_proto.trine.v1 import ReportOutcome, RetryPolicy, SignalRunRequest

Harness = Any
FORMAT_1_FAMILIES = set(FAMILIES) - {ATTEMPTS, SIGNALS}


def _as_format_1(path: Path) -> None:
    """The database as format 1 laid it out: no ``attempts`` or ``signals`` family."""
    raw = Rdict(str(path), Options(raw_mode=True))
    for family in (ATTEMPTS, SIGNALS):
        raw.drop_column_family(family)
    meta = raw.get_column_family(META)
    meta[b"format"] = b"1"
    del meta
    raw.close()
    del raw
    assert set(Rdict.list_cf(str(path), Options(raw_mode=True))) == {"default", *FORMAT_1_FAMILIES}


def _rows(path: Path, family: str) -> list[bytes]:
    store = Store.open(path)
    try:
        return [key for key, _ in store.scan(family)]
    finally:
        store.close()


async def _signal(h: Harness, run_id: str, name: str, payload: bytes) -> None:
    await h.backend.signal_run(SignalRunRequest(run_id=run_id, name=name, payload=payload))


async def test_a_format_1_database_is_upgraded_and_its_runs_resume(h: Harness) -> None:
    await h.register("greet", "flaky", retry=RetryPolicy(max_attempts=5, initial_interval_ms=10))
    flaky = await h.start("flaky")
    waiting = await h.start("greet")
    ended = await h.start("greet")
    for attempt in (1, 2):  # the step failed twice; the run waits out its backoff
        item = await h.take_one(functions=("flaky",), wait_ms=5_000)
        retry = await h.report(item, h.failed(0, attempt=attempt))
        assert retry.outcome == ReportOutcome.RETRY_SCHEDULED
        h.clock.advance(20)  # past the backoff (10 ms, then 20 ms)
    await _signal(h, waiting.id, "approve", b"1")
    await _signal(h, waiting.id, "approve", b"2")
    await _signal(h, waiting.id, "other", b'{"n": 3}')
    item = await h.take_one()
    assert item.run.id == waiting.id
    await h.report(item, h.wait_signal(0, "approve"))  # takes "1"
    await _signal(h, ended.id, "approve", b"4")
    item = await h.take_one()
    await h.report(item, h.failed(0, retryable=False), h.finish())
    await h.close()
    _as_format_1(h.config.data_dir)

    with capture_logs() as logs:
        await h.open()
    assert [(e["from_format"], e["to_format"]) for e in logs if "from_format" in e] == [("1", "2")]
    assert h.inspect(flaky.id).step_attempts == {0: 2}
    # The JSON of a kept payload comes back compact, as format 1 rebuilt it.
    assert h.inspect(waiting.id).signals == {"approve": (b"2",), "other": (b'{"n":3}',)}

    await h.reopen()  # format 2 now: the rows, not the events, bring them back
    assert h.inspect(flaky.id).step_attempts == {0: 2}
    again = await h.take_one(functions=("flaky",))
    assert again.step_attempts == {0: 2}
    assert again.lease.attempt == 3
    item = await h.take_one()
    assert item.run.id == waiting.id
    first = await h.report(item, h.wait_signal(1, "approve"), h.wait_signal(2, "other"))
    assert [e.output for e in first.resolved] == [b"2", b'{"n":3}']
    await h.close()
    assert _rows(h.config.data_dir, SIGNALS) == []  # taken: gone
    assert len(_rows(h.config.data_dir, ATTEMPTS)) == 1  # the flaky run's, still active


async def test_an_ended_run_leaves_no_attempts_or_kept_signals(h: Harness) -> None:
    await h.register(retry=RetryPolicy(max_attempts=3, initial_interval_ms=10))
    run = await h.start()
    await _signal(h, run.id, "never-waited-for", b"1")
    await h.report(await h.take_one(), h.failed(0))
    h.clock.advance(10)
    await h.take_one(wait_ms=5_000)
    await h.close()
    assert len(_rows(h.config.data_dir, ATTEMPTS)) == len(_rows(h.config.data_dir, SIGNALS)) == 1
    await h.open()
    item = await h.take_one()  # the lease died with the engine
    await h.report(item, h.finish())
    assert h.inspect(run.id).step_attempts == {}
    await h.close()
    assert _rows(h.config.data_dir, ATTEMPTS) == _rows(h.config.data_dir, SIGNALS) == []
