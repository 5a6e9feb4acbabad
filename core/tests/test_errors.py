from trine_core import RunNotFound, TrineError, UnknownFunction, error_from_code


def test_codes_round_trip() -> None:
    err = error_from_code("unknown_function", "no such function", known=["order"])
    assert isinstance(err, UnknownFunction)
    assert err.to_dict() == {
        "code": "unknown_function",
        "message": "no such function",
        "details": {"known": ["order"]},
    }
    assert isinstance(error_from_code("run_not_found", "x"), RunNotFound)
    assert type(error_from_code("what_is_this", "m")) is TrineError
