"""``trine tokens new --name N --scopes read,write [--functions a,b]``: a fresh API token.

It prints the token on the first line of stdout (``… | head -1``) and, on the next, the
``[[tokens]]`` entry to add to the ``[auth] tokens_file`` (``… | tail -n +2 >> tokens.toml``),
which holds only the token's SHA-256; what to do with them goes to stderr. The token is
written nowhere else: shown once, it cannot be recovered, only replaced (issue 13; the file
format is :mod:`trine_core.auth`'s). The running roles pick the new entry up on SIGHUP.

The trine.commands entry point ``tokens`` names this module; it registers the command alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trine_core import CommandRegistry, ConfigError, hash_token, hookimpl, new_token
from trine_core.auth import SCOPES, WORKER, parse_scopes

OK = 0
USAGE = 2


def entry(name: str, token: str, scopes: Sequence[str], functions: Sequence[str] = ()) -> str:
    """The TOML ``[[tokens]]`` entry of ``token`` (its SHA-256, never the token)."""
    lines = [
        "[[tokens]]",
        f"name = {json.dumps(name)}",  # a JSON string is a valid TOML basic string
        f'sha256 = "{hash_token(token)}"',
        f"scopes = [{', '.join(json.dumps(s) for s in scopes)}]",
    ]
    if functions:
        lines.append(f"functions = [{', '.join(json.dumps(f) for f in functions)}]")
    return "\n".join(lines) + "\n"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="API tokens for [auth] tokens_file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    new = commands.add_parser(
        "new",
        help="print a fresh token and the entry to add to the tokens file",
        description="Print a fresh random token (first line; shown once, stored nowhere) and "
        "the [[tokens]] entry to add to the tokens file (its SHA-256, never the token). Send "
        "SIGHUP to the running roles to apply the file.",
    )
    new.add_argument("--name", required=True, help="unique name of the token (who holds it)")
    new.add_argument(
        "--scopes",
        required=True,
        help=f"comma-separated: {', '.join(SCOPES)} (admin implies read and write)",
    )
    new.add_argument(
        "--functions",
        default="",
        help="comma-separated functions a worker token may serve (default: every function)",
    )
    return parser


def main(prog: str, argv: Sequence[str]) -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    name = args.name.strip()
    if not name:
        parser.error("--name: empty")
    try:
        scopes = parse_scopes(args.scopes)
    except ConfigError as exc:
        parser.error(f"--scopes: {exc.message}")
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    if functions and WORKER not in scopes:
        parser.error("--functions applies only to a token with scope 'worker'")
    token = new_token()
    print(token, entry(name, token, scopes, functions), sep="\n", end="", flush=True)
    print(
        "the first line is the token, shown once and stored nowhere; add the entry to the "
        "tokens file ([auth] tokens_file) and send SIGHUP to the running roles",
        file=sys.stderr,
    )
    return OK


@hookimpl
def trine_register_commands(registry: CommandRegistry) -> None:
    registry.add_command("tokens", main)
