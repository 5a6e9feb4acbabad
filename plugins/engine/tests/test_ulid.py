"""Run ids: 26-character Crockford base32 ULIDs, strictly increasing within one engine."""

from __future__ import annotations

from trine_engine.ulid import ALPHABET, UlidGenerator, encode, timestamp_ms


def test_shape_and_time() -> None:
    ids = UlidGenerator()
    value = ids.new(1_700_000_000_123)
    assert len(value) == 26
    assert set(value) <= set(ALPHABET)
    assert timestamp_ms(value) == 1_700_000_000_123
    assert encode(0) == "0" * 26
    assert encode((1 << 128) - 1) == "7" + "Z" * 25


def test_same_millisecond_and_clock_going_back_stay_sorted() -> None:
    ids = UlidGenerator()
    made = [ids.new(1000) for _ in range(1000)]
    made.append(ids.new(999))  # clock stepped back
    made.append(ids.new(1001))
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert {timestamp_ms(v) for v in made[:-1]} == {1000}
