"""``trine tokens new``: a fresh token on the first line, its entry (never the token) after it,
an entry the tokens file accepts with the scopes asked for, and usage errors for bad scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from trine_admin.tokens import main
from trine_core import TokenBook
from trine_core.cli import main as trine_main


def new(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main("trine tokens", ["new", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_a_token_and_the_entry_that_admits_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = new(capsys, "--name", "ci", "--scopes", "write,read")
    assert code == 0
    token, *entry = out.splitlines()
    assert token.startswith("trine_")
    assert len(token) == 49
    assert token not in "\n".join(entry)  # only its digest is in the entry
    assert entry[0] == "[[tokens]]"
    assert "stored nowhere" in err
    path = tmp_path / "tokens.toml"
    path.write_text("\n".join(entry) + "\n")
    found = TokenBook.load(path).check(token)
    assert found is not None
    assert found.name == "ci"
    assert found.scopes == frozenset({"read", "write"})
    assert found.functions is None


def test_two_tokens_differ(capsys: pytest.CaptureFixture[str]) -> None:
    first = new(capsys, "--name", "a", "--scopes", "read")[1].splitlines()[0]
    second = new(capsys, "--name", "a", "--scopes", "read")[1].splitlines()[0]
    assert first != second


def test_a_worker_token_limited_to_functions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = new(capsys, "--name", 'w "1"', "--scopes", "worker", "--functions", "order,b")
    assert code == 0
    token, *entry = out.splitlines()
    path = tmp_path / "tokens.toml"
    path.write_text("\n".join(entry))
    found = TokenBook.load(path).check(token)
    assert found is not None
    assert found.name == 'w "1"'  # quoted as TOML needs
    assert found.may_serve("order")
    assert not found.may_serve("refund")


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--name", "x", "--scopes", "read,sudo"], "--scopes: unknown scope 'sudo'"),
        (["--name", "x", "--scopes", ","], "--scopes: no scopes"),
        (["--name", " ", "--scopes", "read"], "--name: empty"),
        (["--name", "x", "--scopes", "read", "--functions", "order"], "only to a token with"),
        (["--scopes", "read"], "the following arguments are required: --name"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], problem: str) -> None:
    code, out, err = new(capsys, *argv)
    assert code == 2
    assert out == ""
    assert problem in err


def test_the_trine_program_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = trine_main(["tokens", "new", "--name", "ops", "--scopes", "admin"])
    assert code == 0
    assert 'scopes = ["admin"]' in capsys.readouterr().out
