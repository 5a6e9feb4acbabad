"""The cap on a run's kept signals (engine.max_kept_signals, engine.max_kept_signal_bytes)."""

from __future__ import annotations

import pytest

from tests.conftest import Harness
from trine_core import KeptSignalsFull, Settings
from trine_engine.kept_signals import KeptSignalLimits
from trine_engine.settings import MAX_KEPT_SIGNAL_BYTES, MAX_KEPT_SIGNALS, engine_config
from trine_proto.trine.v1 import (
    GetRunRequest,
    ListRunsRequest,
    ReportOutcome,
    Run,
    SignalRunRequest,
)


async def _signal(h: Harness, run_id: str, name: str, payload: bytes = b"1") -> bool:
    response = await h.backend.signal_run(
        SignalRunRequest(run_id=run_id, name=name, payload=payload)
    )
    return response.delivered


async def _kept(h: Harness, run_id: str) -> list[tuple[str, int, int]]:
    run = await h.backend.get_run(GetRunRequest(run_id=run_id))
    return _summary(run)


def _summary(run: Run) -> list[tuple[str, int, int]]:
    return [(k.name, k.count, k.bytes) for k in run.kept_signals]


async def test_a_run_that_does_not_wait_keeps_at_most_max_kept_signals(h: Harness) -> None:
    h.backend.kept_limits = KeptSignalLimits(count=3, bytes=1 << 20)
    await h.register()
    run = await h.start()
    for n in range(3):
        assert await _signal(h, run.id, "tick", str(n).encode()) is False
    with pytest.raises(KeptSignalsFull) as caught:
        await _signal(h, run.id, "tick", b"3")
    assert caught.value.details["limit"] == "engine.max_kept_signals"
    assert caught.value.details["kept"] == 3
    assert "does not wait for signal 'tick'" in caught.value.message
    # Nothing was lost: the three kept signals are taken, in order, by later waits; then there is
    # room again.
    item = await h.take_one()
    for index in range(3):
        taken = await h.report(item, h.wait_signal(index, "tick"))
        assert taken.outcome == ReportOutcome.CONTINUE
        assert taken.resolved[0].output == str(index).encode()
    waiting = await h.report(item, h.wait_signal(3, "tick"))
    assert waiting.outcome == ReportOutcome.SUSPENDED
    assert await _signal(h, run.id, "tick", b"4") is True  # a waiting run is never refused
    assert await _signal(h, run.id, "other") is False  # and keeps again


async def test_kept_signal_bytes_are_capped(h: Harness) -> None:
    h.backend.kept_limits = KeptSignalLimits(count=100, bytes=1000)
    await h.register()
    run = await h.start()
    payload = b'"' + b"x" * 398 + b'"'  # 400 bytes
    assert await _signal(h, run.id, "a", payload) is False
    assert await _signal(h, run.id, "b", payload) is False
    with pytest.raises(KeptSignalsFull) as caught:
        await _signal(h, run.id, "c", payload)
    assert caught.value.details["limit"] == "engine.max_kept_signal_bytes"
    assert caught.value.details["kept_bytes"] == 800
    assert await _signal(h, run.id, "c", b"1") is False  # a smaller one still fits


def test_limits_from_settings() -> None:
    config = engine_config(Settings({MAX_KEPT_SIGNALS: 5, MAX_KEPT_SIGNAL_BYTES: 100}))
    assert KeptSignalLimits.of(config) == KeptSignalLimits(count=5, bytes=100)
    default = KeptSignalLimits.of(engine_config(Settings()))
    assert default == KeptSignalLimits(1_000, 64 << 20)


async def test_the_runs_view_lists_its_kept_signals_per_name(h: Harness) -> None:
    """Run.kept_signals: per name (sorted) the count and payload bytes of the signals no wait
    took; a signal a wait takes leaves it, an ended run keeps none, and none is ever stored."""
    await h.register()
    run = await h.start()
    assert await _kept(h, run.id) == []
    response = await h.backend.signal_run(
        SignalRunRequest(run_id=run.id, name="zeta", payload=b'"abc"')
    )
    assert _summary(response.run) == [("zeta", 1, 5)]  # the signal's answer shows it already
    await _signal(h, run.id, "alpha", b"12")
    await _signal(h, run.id, "zeta", b"[1,2,3]")
    assert await _kept(h, run.id) == [("alpha", 1, 2), ("zeta", 2, 12)]
    listed = await h.backend.list_runs(ListRunsRequest())
    assert [_summary(r) for r in listed.runs] == [[("alpha", 1, 2), ("zeta", 2, 12)]]
    item = await h.take_one()
    taken = await h.report(item, h.wait_signal(0, "zeta"))  # takes the oldest zeta
    assert taken.resolved[0].output == b'"abc"'
    assert await _kept(h, run.id) == [("alpha", 1, 2), ("zeta", 1, 7)]
    await h.report(item, h.wait_signal(1, "zeta"))
    assert await _kept(h, run.id) == [("alpha", 1, 2)]  # no empty entry for a name taken
    assert h.inspect(run.id).run.kept_signals == []  # derived, never stored
    await h.report(item, h.finish())
    assert await _kept(h, run.id) == []  # an ended run keeps nothing
