"""The ``tcp://`` worker wire's ``HELLO``: what a worker may open with, and what is refused."""

from __future__ import annotations

import pytest

from trine_proto import frames


def test_a_hello_round_trips_with_names_lower_cased() -> None:
    body = frames.hello({"Authorization": "Bearer t", "trine-worker-instance": "é-7"})
    kind, length = frames.HEADER.unpack_from(body, len(frames.PREAMBLE))
    assert kind == frames.HELLO
    start = len(frames.PREAMBLE) + frames.HEADER.size
    assert frames.read_hello(body[start : start + length]) == {
        "authorization": "Bearer t",
        "trine-worker-instance": "é-7",
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{", "not JSON"),
        (b"[" * 2_000 + b"]" * 2_000, "not JSON"),
        (b'["a"]', "not an object of strings"),
        (b'{"a": 1}', "not an object of strings"),
        # A lone surrogate reached the token check and raised UnicodeEncodeError there, before
        # authentication, as a traceback in the coordinator's log.
        (b'{"authorization": "Bearer \\ud800"}', "not Unicode text"),
        (b'{"\\udfff": "x"}', "not Unicode text"),
    ],
)
def test_a_malformed_hello_is_a_wire_error_naming_it(body: bytes, problem: str) -> None:
    with pytest.raises(frames.WireError, match=problem):
        frames.read_hello(body)
