"""``trine tokens new``: a fresh token on the first line, its entry (never the token) after it,
an entry the tokens file accepts with the scopes asked for, and usage errors for bad scopes."""

from __future__ import annotations

from pathlib import Path

import pytest
from served import FUNCTIONS, run_cli

from trine_admin.tokens import entry, main
from trine_core import AUTH_TOKENS_FILE, Settings, TokenBook, new_token
from trine_core.cli import main as trine_main
from trine_core.testing.memory import MemoryEngine
from trine_gateway import GatewayServer, Lifecycle, create_app
from trine_gateway.plugin import HTTP_ADDR


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


async def test_the_cli_sends_trine_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trine runs list`` against a gateway with a tokens file: TRINE_TOKEN is what it sends;
    a refusal is the API error's one line and exit code 1."""
    tokens = {name: new_token() for name in ("reader", "worker")}
    path = tmp_path / "tokens.toml"
    path.write_text(
        entry("reader", tokens["reader"], ["read"]) + entry("worker", tokens["worker"], ["worker"])
    )
    memory = MemoryEngine(functions=FUNCTIONS)
    settings = Settings({HTTP_ADDR: "127.0.0.1:0", AUTH_TOKENS_FILE: str(path)})
    lifecycle = Lifecycle()
    app = create_app(memory.backend, settings, lambda: True, lifecycle=lifecycle)
    server = GatewayServer(app, settings[HTTP_ADDR], lifecycle)
    await server.start()
    try:
        monkeypatch.delenv("TRINE_TOKEN", raising=False)
        refused = await run_cli(capsys, "runs", "list", url=server.url)
        assert refused.code == 1
        assert refused.err.startswith("error: unauthenticated: ")
        assert "TRINE_TOKEN" in refused.err
        assert len(refused.err.splitlines()) == 1

        monkeypatch.setenv("TRINE_TOKEN", tokens["worker"])
        denied = await run_cli(capsys, "runs", "list", url=server.url)
        assert denied.code == 1
        assert denied.err == "error: permission_denied: token 'worker' lacks scope 'read'\n"

        monkeypatch.setenv("TRINE_TOKEN", tokens["reader"])
        listed = await run_cli(capsys, "runs", "list", url=server.url)
        assert (listed.code, listed.err) == (0, "no runs\n")
    finally:
        await server.stop()
