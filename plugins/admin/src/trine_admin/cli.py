"""``trine runs``, ``trine workers``, ``trine functions``, ``trine builds``, ``trine replay``: the
admin commands, over the HTTP API through :class:`trine.Client`.

Each command parses its arguments (argparse: a usage error exits 2), then runs one coroutine
that calls the API and prints: a table or a ``key  value`` view by default, the API's JSON
document with ``--json``. Every failure is one line on stderr and an exit code (:data:`EXIT_CODES`),
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

import trine
from trine.client import DEFAULT_URL, FINAL_STATUSES
from trine_admin import render
from trine_admin import replay as replays

OK = 0
API_ERROR = 1
USAGE = 2
UNREACHABLE = 3
NOT_COMPLETED = 4
INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {OK}    done
  {API_ERROR}    the API refused the request: "error: <code>: <message>" (run_not_found,
       unknown_function, run_finished, invalid_argument, invalid_request, ...)
  {USAGE}    a usage error: a bad flag or argument, an INPUT that is not JSON
  {UNREACHABLE}    no trine gateway answers at the URL (refused, unresolvable, timed out, or
       something else answers there)
  {NOT_COMPLETED}    the run waited for did not end as asked: runs start --wait ended failed or
       cancelled; runs cancel --wait ran out before the run ended
  {INTERRUPTED}  interrupted (Ctrl-C): a run waited for or followed goes on
"""

REPLAY_EXIT_CODES = f"""\
exit codes:
  {OK}    every run replayed (or there was none to replay)
  {API_ERROR}    a run did not replay (a FAIL line), or the API refused a request
  {USAGE}    a usage error: a bad flag, a --worker that cannot be imported or is not a
       trine.Worker, a --function it does not serve
  {UNREACHABLE}    no trine gateway answers at the URL
"""

COMMANDS = ("runs", "workers", "functions", "builds", "replay")
MAX_WAIT_S = 300.0
"""The longest ``?wait`` the gateway takes (``runs cancel --wait``)."""


class UsageError(Exception):
    """A bad argument found after parsing (an INPUT that is not JSON, an unreadable @file):
    reported as argparse reports its own, exit 2."""


class Failure(Exception):
    """A one-line failure with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the command line ----------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Subcommand(argparse.ArgumentParser):
    """A subcommand's parser: options and positionals in any order, so that ``trine runs start
    order --wait '{...}'`` reads the input (plain argparse stops filling positionals once an
    option came between them: python/cpython#59317)."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _common() -> argparse.ArgumentParser:
    """``--url`` and ``--json``, accepted before and after a subcommand (``trine runs --json
    list`` and ``trine runs list --json``): SUPPRESS keeps the outer value when the inner one is
    absent."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"the gateway's HTTP API (default: $TRINE_URL, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON document instead of a table",
    )
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, more than 0")
    return value


def _wait_seconds(text: str) -> float:
    value = _positive(text)
    if value > MAX_WAIT_S:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_WAIT_S:g} seconds")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 to 1000")
    return value


def _event_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 or more")
    return value


def _last(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 to 1000")
    return value


def _build_id(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a build id (no spaces, not empty)")
    return text


def _replay_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_Formatter,
        description="Replay the latest finished (completed or failed) runs of each function a "
        "worker serves, read from a live runtime, against the worker's local code: a change "
        "those runs could not continue fails here, before it is deployed. One line per run: "
        "`ok RUN FUNCTION` or `FAIL RUN FUNCTION: why`.",
        epilog=REPLAY_EXIT_CODES,
    )
    p.add_argument(
        "--url",
        help=f"the gateway's HTTP API (default: $TRINE_URL, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--worker",
        required=True,
        metavar="MODULE:ATTR",
        help="the trine.Worker to check, e.g. app.workers:worker (imported from the current "
        "directory)",
    )
    p.add_argument(
        "--last",
        type=_last,
        default=replays.DEFAULT_LAST,
        metavar="N",
        help=f"the newest N finished runs of each function (default: {replays.DEFAULT_LAST})",
    )
    p.add_argument(
        "--function",
        action="append",
        metavar="F",
        help="only this function (repeat for several; default: every one the worker serves)",
    )
    p.set_defaults(handler=replay, parser=p)
    return p


def parser(name: str, prog: str) -> argparse.ArgumentParser:
    """The parser of the command ``name`` (one of :data:`COMMANDS`)."""
    common = _common()
    if name == "replay":
        return _replay_parser(prog)
    if name == "builds":
        p = argparse.ArgumentParser(
            prog=prog,
            parents=[common],
            formatter_class=_Formatter,
            description="Every build the workers registered with (GET /v1/builds): whether a "
            "worker of it asks for work now, its open runs and its functions.",
            epilog=EXIT_CODES,
        )
        p.set_defaults(handler=builds, parser=p)
        return p
    if name == "workers":
        p = argparse.ArgumentParser(
            prog=prog,
            parents=[common],
            formatter_class=_Formatter,
            description="The workers connected to the coordinators (GET /v1/workers): their "
            "functions, capacity, runs in flight and last heartbeat.",
            epilog=EXIT_CODES,
        )
        p.add_argument(
            "--runs", action="store_true", help="also list the runs each worker holds now"
        )
        p.set_defaults(handler=workers, parser=p)
        return p
    if name == "functions":
        p = argparse.ArgumentParser(
            prog=prog,
            parents=[common],
            formatter_class=_Formatter,
            description="Every function a worker registered (GET /v1/functions), with its "
            "retry policy (and timeout and counts of runs by status when the API gives them).",
            epilog=EXIT_CODES,
        )
        p.set_defaults(handler=functions, parser=p)
        return p
    if name != "runs":
        raise ValueError(f"no command {name!r}")
    p = argparse.ArgumentParser(
        prog=prog,
        parents=[common],
        formatter_class=_Formatter,
        description="List, read, follow, start, cancel, signal, retry and move runs over the "
        "HTTP API.",
        epilog=EXIT_CODES,
    )
    sub = p.add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=_Subcommand
    )

    def add(
        name: str, handler: Callable[..., Awaitable[int]], text: str
    ) -> argparse.ArgumentParser:
        parents: list[Any] = [common]  # typeshed wants the subparsers' own class here
        s = sub.add_parser(
            name,
            parents=parents,
            formatter_class=_Formatter,
            help=text,
            description=text,
            epilog=EXIT_CODES,
        )
        s.set_defaults(handler=handler, parser=s)
        return s

    s = add("list", runs_list, "runs in creation order, a page at a time (GET /v1/runs)")
    s.add_argument("--status", choices=render.STATUSES, help="only runs in this status")
    s.add_argument("--function", help="only runs of this function")
    s.add_argument("--limit", type=_limit, help="runs per page, 1 to 1000 (the API's default: 50)")
    s.add_argument("--page-token", help="the next page: the token the previous page printed")
    s.add_argument("--all", action="store_true", help="every page, not just the first")

    s = add(
        "show",
        runs_show,
        "a run: status, function, times, input, result or error with its traceback",
    )
    s.add_argument("run_id", metavar="RUN_ID")

    s = add("journal", runs_journal, "a run's journal: its steps and waits, a row each")
    s.add_argument("run_id", metavar="RUN_ID")

    s = add(
        "events",
        runs_events,
        "a run's events, live until its final event (Ctrl-C stops following); "
        "--json: one JSON line per event",
    )
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("--after", type=_event_id, metavar="EVENT_ID", help="start after this event")
    s.add_argument(
        "--reconnect-timeout",
        type=_positive,
        default=60.0,
        metavar="SECONDS",
        help="give up after the stream is broken this long (default: 60)",
    )

    s = add(
        "start",
        runs_start,
        "start a run of FUNCTION; prints its id (--wait: its result)",
    )
    s.add_argument("function", metavar="FUNCTION")
    s.add_argument(
        "input",
        metavar="INPUT",
        nargs="?",
        help="the run's input: JSON, @FILE (a JSON file) or - (JSON on stdin); default: null",
    )
    s.add_argument("--idempotency-key", metavar="KEY", help="start at most one run per key")
    s.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help="the run's deadline: it fails with RunTimeout if not finished by then",
    )
    s.add_argument(
        "--wait",
        action="store_true",
        help="wait until the run ends and print its result (exit 4 if it failed or was "
        "cancelled; Ctrl-C stops waiting, not the run)",
    )

    s = add("cancel", runs_cancel, "cancel a run that has not ended")
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("--reason", default="", help="kept in the run's error message")
    s.add_argument(
        "--wait",
        type=_wait_seconds,
        metavar="SECONDS",
        help="wait up to this long (at most 300) for the run to end (exit 4 if it has not)",
    )

    s = add(
        "retry",
        runs_retry,
        "resume a failed or blocked run from its journal: the steps that succeeded replay, the "
        "failed step runs again on today's code",
    )
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("--reason", default="", help="carried by the run's run.retried event")

    s = add(
        "move",
        runs_move,
        "make a run that has not ended continue only on workers of another build",
    )
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument(
        "--build",
        required=True,
        type=_build_id,
        metavar="BUILD",
        help="a build a worker registered the run's function with (see: trine builds)",
    )

    s = add(
        "history",
        runs_history,
        "a run and its journal as JSON (format trine.history/1), for trine.testing.replay: "
        "trine runs history RUN_ID > run.json",
    )
    s.add_argument("run_id", metavar="RUN_ID")

    s = add("signal", runs_signal, "send the signal NAME to a run, with a JSON payload")
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("name", metavar="NAME")
    s.add_argument(
        "payload",
        metavar="PAYLOAD",
        nargs="?",
        help="JSON, @FILE (a JSON file) or - (JSON on stdin); default: null",
    )
    return p


def parse(name: str, prog: str, argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of the command ``name``; ``SystemExit`` for ``--help`` (0) and usage
    errors (2), as argparse does."""
    args = parser(name, prog).parse_args(argv)
    args.url = getattr(args, "url", None)
    args.json = getattr(args, "json", False)
    return args


def main(name: str, prog: str, argv: Sequence[str]) -> int:
    """The command ``name`` with the arguments ``argv``: its exit code."""
    try:
        args = parse(name, prog, argv)
    except SystemExit as exc:  # --help (0) or argparse's usage error (2)
        return exc.code if isinstance(exc.code, int) else USAGE
    previous = signal.getsignal(signal.SIGINT)
    with contextlib.suppress(ValueError):  # not the main thread (embedded): asyncio's own then
        signal.signal(signal.SIGINT, _interrupted)
    try:
        return asyncio.run(execute(args))
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # the reader left (`trine runs events ID | head -3`): done, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        return OK
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGINT, previous)


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C ends the command at once, exit code 130, no traceback. Not through asyncio's own
    handler, which only cancels the command's task: a cancellation an HTTP read swallows (seen
    under load) would leave ``trine runs events`` running until a second Ctrl-C."""
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe, or a write this signal interrupted: nothing more to save
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            stream.flush()
    os._exit(INTERRUPTED)


async def execute(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure becomes one line on stderr and its exit code."""
    p: argparse.ArgumentParser = args.parser
    try:
        url = _url(args.url)
        async with trine.Client(url) as client:
            handler: Callable[[trine.Client, argparse.Namespace], Awaitable[int]] = args.handler
            return await handler(client, args)
    except UsageError as exc:
        p.print_usage(sys.stderr)
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return USAGE
    except Failure as exc:
        _error(exc.message)
        return exc.code
    except trine.ClientError as exc:
        return _client_error(exc, url)
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        _error(f"cannot reach the trine gateway at {url}: {one_line(reason)}")
        return UNREACHABLE
    except ValueError as exc:  # a 2xx answer that is not JSON: not a trine gateway
        _error(f"{url} does not answer as a trine gateway does: {one_line(str(exc))}")
        return UNREACHABLE


def _url(given: str | None) -> str:
    """``--url``, else ``$TRINE_URL``, else the local gateway (as :class:`trine.Client`)."""
    url = given or os.environ.get("TRINE_URL") or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = "--url" if given else "TRINE_URL"
        raise UsageError(f"{where} {url!r} is not an http:// or https:// URL")
    return url


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def one_line(text: str, limit: int | None = 300) -> str:
    """``text`` on one line, cut at ``limit`` characters (None: whole)."""
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _client_error(exc: trine.ClientError, url: str) -> int:
    if exc.code.startswith("http_"):  # an answer without the API's error body
        what = f"HTTP {exc.status}" + (f": {one_line(exc.message)}" if exc.message else "")
        _error(f"{url} does not answer as a trine gateway does ({what})")
        return UNREACHABLE
    message = one_line(exc.message, None)  # the API's own message: whole
    known = exc.details.get("known") if isinstance(exc.details, Mapping) else None
    if isinstance(known, list) and "known" not in message:
        message += f" (known: {', '.join(map(str, known)) or 'none registered'})"
    _error(f"{exc.code}: {message}")
    return API_ERROR


def _print(text: str) -> None:
    print(text, flush=True)


def _print_json(document: Any) -> None:
    _print(render.pretty(document))


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def read_json(text: str | None, what: str) -> Any:
    """An argument that is JSON, ``@FILE`` or ``-`` (stdin); None when absent (null)."""
    if text is None:
        return None
    source = what
    if text == "-":
        text, source = sys.stdin.read(), f"{what} (stdin)"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None
        source = f"{what} ({path})"
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        hint = ""
        if text.strip() and text.strip()[0].isalpha():
            hint = f"; a JSON string has quotes: '\"{text.strip()}\"'"
        raise UsageError(f"{source} is not valid JSON: {exc}{hint}") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# -- runs ----------------------------------------------------------------------------------------


async def runs_list(client: trine.Client, args: argparse.Namespace) -> int:
    token = args.page_token
    runs: list[Any] = []
    while True:
        page = await client.list_runs(
            status=args.status, function=args.function, limit=args.limit, page_token=token
        )
        runs.extend(page.get("runs") or [])
        token = page.get("next_page_token")
        if not args.all or not token:
            break
    if args.json:
        document = page if not args.all else {**page, "runs": runs, "next_page_token": None}
        _print_json(document)
        return OK
    if runs:
        _print(render.runs_table(runs))
    else:
        _note("no runs")
    if token:
        _note(f"more: {_more(args, token)}")
    return OK


def _more(args: argparse.Namespace, token: str) -> str:
    """The command that prints the next page."""
    words = [args.parser.prog]
    for flag in ("status", "function", "limit"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag}", str(value)]
    return " ".join([*words, "--page-token", token])


async def runs_show(client: trine.Client, args: argparse.Namespace) -> int:
    run = await client.get(args.run_id)
    _print_json(run) if args.json else _print(render.run_view(run))
    return OK


async def runs_journal(client: trine.Client, args: argparse.Namespace) -> int:
    entries = await client.journal(args.run_id)
    if args.json:
        _print_json({"entries": entries})
    elif entries:
        _print(render.journal_table(entries))
    else:
        _note(f"run {args.run_id} has no journal entries yet")
    return OK


def event_json(event: trine.Event) -> dict[str, Any]:
    """An event as the API sends it (the SSE ``data``: ``{seq, type, name, data, at}``)."""
    at = event.at.astimezone(UTC)
    iso = None
    if at != datetime.fromtimestamp(0, tz=UTC):
        iso = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {"seq": event.id, "type": event.type, "name": event.name, "data": event.data, "at": iso}


async def runs_events(client: trine.Client, args: argparse.Namespace) -> int:
    await client.get(args.run_id)  # an unknown run or a wrong URL fails now, not after retries
    stream = client.events(
        args.run_id, last_event_id=args.after, reconnect_timeout=args.reconnect_timeout
    )
    async for event in stream:
        document = event_json(event)
        _print(render.compact(document) if args.json else render.event_line(document))
    return OK


async def runs_start(client: trine.Client, args: argparse.Namespace) -> int:
    value = read_json(args.input, "INPUT")
    run = await client.start(
        args.function, value, idempotency_key=args.idempotency_key, timeout=args.timeout
    )
    if not args.wait:
        _print_json(run) if args.json else _print(str(run["id"]))
        return OK
    if not args.json:
        _note(f"run {run['id']} ({run.get('function')}) started; waiting for it to end")
    if run.get("status") not in FINAL_STATUSES:
        run = await client.wait(str(run["id"]), timeout=math.inf)
    if args.json:
        _print_json(run)
    elif run.get("status") == "completed":
        _print(render.pretty(run.get("result")))
    else:
        _ended(run)
    return OK if run.get("status") == "completed" else NOT_COMPLETED


def _ended(run: Mapping[str, Any]) -> None:
    """A run that failed or was cancelled, on stderr: its error and traceback."""
    error = run.get("error") or {}
    _error(f"run {run.get('id')} {run.get('status')}: {render.error_text(error) or '-'}")
    traceback = str(error.get("traceback") or "").rstrip()
    if traceback:
        _note(traceback)


async def runs_cancel(client: trine.Client, args: argparse.Namespace) -> int:
    run = await client.cancel(args.run_id, args.reason, wait=args.wait)
    final = run.get("status") in FINAL_STATUSES
    if args.json:
        _print_json(run)
    elif final:
        _print(f"run {run.get('id')}: {run.get('status')}")
    else:
        deadline = run.get("cancel_deadline")
        by = f", cancelled at the latest at {deadline}" if deadline else ""
        _print(
            f"run {run.get('id')}: cancellation requested ({run.get('status')}: the workflow "
            f"is cleaning up{by})"
        )
    if args.wait is not None and not final:
        if not args.json:
            _error(f"run {run.get('id')} has not ended after {args.wait:g} s")
        return NOT_COMPLETED
    return OK


async def runs_retry(client: trine.Client, args: argparse.Namespace) -> int:
    run = await client.retry(args.run_id, args.reason)
    if args.json:
        _print_json(run)
    else:
        _print(f"run {run.get('id')}: retried ({run.get('status')}, retry {run.get('retries')})")
    return OK


async def runs_move(client: trine.Client, args: argparse.Namespace) -> int:
    run = await client.move(args.run_id, args.build)
    if args.json:
        _print_json(run)
    else:
        _print(f"run {run.get('id')}: moved to build {run.get('build_id')} ({run.get('status')})")
    return OK


async def runs_history(client: trine.Client, args: argparse.Namespace) -> int:
    """Always JSON: the document is the point (``> run.json`` keeps it for a replay)."""
    _print_json(await client.history(args.run_id))
    return OK


async def runs_signal(client: trine.Client, args: argparse.Namespace) -> int:
    payload = read_json(args.payload, "PAYLOAD")
    answer = await client.signal(args.run_id, args.name, payload)
    if args.json:
        _print_json(answer)
    elif answer.get("delivered"):
        _print(f"signal {args.name!r} delivered to run {answer.get('run_id')}")
    else:
        _print(
            f"signal {args.name!r} kept for run {answer.get('run_id')} until it waits for it "
            f"({(answer.get('run') or {}).get('status')})"
        )
    return OK


# -- functions and workers -----------------------------------------------------------------------


def _listing(
    args: argparse.Namespace,
    document: dict[str, Any],
    key: str,
    table: Callable[[list[dict[str, Any]]], str],
    empty: str,
) -> int:
    """Print a listing document: as JSON, as ``table`` of its ``key`` list, or ``empty``."""
    listed = document.get(key) or []
    if args.json:
        _print_json(document)
    elif listed:
        _print(table(listed))
    else:
        _note(empty)
    return OK


async def functions(client: trine.Client, args: argparse.Namespace) -> int:
    document = await client.list_functions()
    no_functions = "no functions registered: no worker has connected yet"
    return _listing(args, document, "functions", render.functions_table, no_functions)


async def workers(client: trine.Client, args: argparse.Namespace) -> int:
    try:
        document = await client.list_workers()
    except trine.ClientError as exc:
        if exc.status == 404 and exc.code == "not_found":
            raise Failure(
                API_ERROR,
                f"not_found: the gateway at {client.base_url} does not serve GET /v1/workers "
                "(a trine older than the workers API)",
            ) from None
        raise
    listed = document.get("workers") or []
    if args.json:
        _print_json(document)
        return OK
    for missing in document.get("unavailable") or []:  # a coordinator that did not answer
        code, message = missing.get("code", ""), one_line(str(missing.get("message", "")), None)
        _note(f"warning: a coordinator did not answer, its workers are missing: {code}: {message}")
    if not listed:
        _note("no workers connected")
        return OK
    _print(render.workers_table(listed))
    if args.runs:
        in_flight = render.runs_in_flight_table(listed)
        _print("")
        _print(in_flight) if in_flight else _note("no runs in flight")
    return OK


async def builds(client: trine.Client, args: argparse.Namespace) -> int:
    document = await client.list_builds()
    no_builds = "no builds known: no worker has registered with a build yet"
    return _listing(args, document, "builds", render.builds_table, no_builds)


# -- replay --------------------------------------------------------------------------------------


async def replay(client: trine.Client, args: argparse.Namespace) -> int:
    """The latest finished runs of the worker's functions, replayed against its code."""
    try:
        worker = replays.load_worker(args.worker)
        functions = replays.functions_to_check(worker, args.function)
    except replays.WorkerNotFound as exc:
        raise UsageError(str(exc)) from None

    def report(outcome: replays.Outcome) -> None:
        for line in outcome.lines():
            _print(line)

    outcomes = await replays.replay_runs(client, worker, functions, args.last, report)
    failed = sum(outcome.problem is not None for outcome in outcomes)
    if not outcomes:
        _note(f"no finished runs of {', '.join(functions)} to replay")
    else:
        _note(f"{len(outcomes)} runs replayed, {failed} failed")
    return API_ERROR if failed else OK
