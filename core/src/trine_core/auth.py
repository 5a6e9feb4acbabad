"""API tokens: the ``[auth] tokens_file`` every enforcing role reads, and the check of a token.

The file is TOML and holds no token in clear, only its SHA-256 (issue 13)::

    [[tokens]]
    name = "ci"                      # unique; how logs and errors name the token
    sha256 = "9f86d0…"               # hex of sha256(token as UTF-8)
    scopes = ["read", "write"]       # read, write, admin, worker
    functions = ["order"]            # optional: the functions a worker token may serve

A token is ``trine_`` + 43 characters of :func:`secrets.token_urlsafe` (32 random bytes):
:func:`new_token` makes one and ``trine tokens new`` prints it with its entry.

Scopes: ``read`` (every GET, event streams, metrics), ``write`` (start, signal, cancel, retry),
``admin`` (move a run, operator actions; it implies read and write), ``worker`` (connect as a
worker; ``functions`` narrows what it may serve).

Revocation needs no restart: every process that enforces tokens calls
:func:`install_sighup_reload`, and ``kill -HUP`` re-reads the file. A reload that fails (a bad
edit) keeps the tokens in force and logs one line, so a typo never opens nor closes the door.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import secrets
import signal
import tomllib
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from trine_core.errors import ConfigError
from trine_core.loops import signal_loop

READ = "read"
WRITE = "write"
ADMIN = "admin"
WORKER = "worker"
SCOPES: tuple[str, ...] = (READ, WRITE, ADMIN, WORKER)
"""Every scope, in the order docs and errors list them."""
IMPLIED: Mapping[str, frozenset[str]] = {ADMIN: frozenset({READ, WRITE})}
"""Scopes a scope grants besides itself: an operator may do what a client may."""
TOKEN_PREFIX = "trine_"
_ENTRY_KEYS = ("name", "sha256", "scopes", "functions")


def new_token() -> str:
    """A fresh random token: ``trine_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the tokens file stores for ``token``: the hex SHA-256 of its UTF-8."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"read,write"`` (or a list) as known scopes, in :data:`SCOPES` order; a ConfigError naming
    an unknown one. Shared by the file's parser and ``trine tokens new``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [str(item).strip() for item in items if str(item).strip()]
    unknown = [name for name in names if name not in SCOPES]
    if unknown:
        raise ConfigError(f"unknown scope {unknown[0]!r} (expected {', '.join(SCOPES)})")
    if not names:
        raise ConfigError(f"no scopes (expected some of {', '.join(SCOPES)})")
    return tuple(scope for scope in SCOPES if scope in names)


@dataclasses.dataclass(frozen=True)
class Token:
    """One entry of the file: who the caller is and what it may do (never the token itself)."""

    name: str
    scopes: frozenset[str]
    functions: frozenset[str] | None = None
    """The functions a worker token may serve; ``None``: every function."""

    def allows(self, scope: str) -> bool:
        """Whether this token grants ``scope``, directly or through one that implies it."""
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)

    def may_serve(self, function: str) -> bool:
        """Whether a worker presenting this token may register and serve ``function``."""
        return self.allows(WORKER) and (self.functions is None or function in self.functions)


@dataclasses.dataclass(frozen=True)
class _Entry:
    digest: bytes
    token: Token


class TokenBook:
    """The tokens of one file, checked in constant time and re-read on demand.

    ``check`` compares the caller's digest with every entry's by :func:`hmac.compare_digest` and
    never stops early, so timing tells nothing about which entry (or how much of one) matched.
    The entries are one tuple swapped whole by :meth:`reload`, so a check racing a reload sees
    either the old tokens or the new, never a mix.
    """

    def __init__(self, tokens: Mapping[str, Token] | None = None, path: Path | None = None):
        """``tokens`` by their hex SHA-256 (tests; the file's parser); ``path`` is what
        :meth:`reload` reads again."""
        self.path = path
        self._entries = tuple(
            _Entry(bytes.fromhex(digest), token) for digest, token in (tokens or {}).items()
        )

    @classmethod
    def load(cls, path: str | Path) -> TokenBook:
        """The tokens of the file at ``path``; a ConfigError naming the file, the entry and the
        problem if it cannot be read or is not a valid tokens file."""
        book = cls(path=Path(path))
        book._entries = _read(book.path)  # type: ignore[arg-type]
        return book

    def reload(self) -> ConfigError | None:
        """Read the file again. On success the new tokens replace the old and this returns None;
        on failure the old tokens stay in force and this returns the error (to log)."""
        if self.path is None:
            return ConfigError("tokens were not loaded from a file: nothing to reload")
        try:
            entries = _read(self.path)
        except ConfigError as exc:
            return exc
        self._entries = entries
        return None

    def check(self, token: str | None) -> Token | None:
        """The entry ``token`` belongs to, or None (no token, or one the file does not know)."""
        if not token:
            return None
        try:
            raw = token.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a JSON "\ud800"): no file holds it
            return None
        digest = hashlib.sha256(raw).digest()
        found: Token | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.token
        return found

    @property
    def tokens(self) -> tuple[Token, ...]:
        """The entries in force (names and scopes; for logs and tests)."""
        return tuple(entry.token for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _read(path: Path) -> tuple[_Entry, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"tokens file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"tokens file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tokens file {path}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"tokens"})
    if extra:
        raise ConfigError(f"tokens file {path}: unknown key {extra[0]!r} (expected [[tokens]])")
    raw = data.get("tokens", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError(f"tokens file {path}: 'tokens' must be an array of tables [[tokens]]")
    entries: list[_Entry] = []
    names: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    for index, item in enumerate(raw):
        entry = _entry(item, f"tokens file {path}: tokens[{index}]")
        where = f"tokens file {path}: tokens[{index}] ({entry.token.name!r})"
        if entry.token.name in names:
            first = names[entry.token.name]
            raise ConfigError(f"{where}: duplicate name (already tokens[{first}])")
        if entry.digest in digests:
            raise ConfigError(f"{where}: same sha256 as {digests[entry.digest]!r}")
        names[entry.token.name] = index
        digests[entry.digest] = entry.token.name
        entries.append(entry)
    return tuple(entries)


def _entry(item: dict[str, Any], where: str) -> _Entry:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: missing 'name' (a non-empty string)")
    where = f"{where} ({name!r})"
    extra = sorted(set(item) - set(_ENTRY_KEYS))
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (expected {', '.join(_ENTRY_KEYS)})")
    for key in ("sha256", "scopes"):
        if key not in item:
            raise ConfigError(f"{where}: missing {key!r}")
    digest = item["sha256"]
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(f"{where}: 'sha256' must be 64 hex digits (the token's SHA-256)")
    try:
        raw_digest = bytes.fromhex(digest)
    except ValueError:
        raise ConfigError(f"{where}: 'sha256' is not hex: {digest!r}") from None
    scopes = item["scopes"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: 'scopes' must be a list of strings")
    try:
        parsed = parse_scopes(scopes)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    functions = item.get("functions")
    if functions is not None:
        if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
            raise ConfigError(f"{where}: 'functions' must be a list of function names")
        if WORKER not in parsed:
            raise ConfigError(f"{where}: 'functions' applies only to a token with scope 'worker'")
    token = Token(
        name=name,
        scopes=frozenset(parsed),
        functions=None if functions is None else frozenset(functions),
    )
    return _Entry(raw_digest, token)


# -- SIGHUP ------------------------------------------------------------------------------------

Log = Any
"""A structlog logger (``trine_core.get_logger``): what the reload reports to."""

_hup_books: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, tuple[TokenBook, Log]]]
_hup_books = weakref.WeakKeyDictionary()


def install_sighup_reload(book: TokenBook, log: Log) -> Callable[[], None]:
    """Re-read ``book``'s file whenever the process gets SIGHUP; returns what undoes it.

    Call it from a coroutine (a role's ``start``). Every book of one process shares one
    handler, because ``add_signal_handler`` keeps a single handler per signal: in the ``all``
    topology the gateway and the coordinator each install theirs and both reload. A role on a
    loop of its own (``own_loop``) has its book reloaded by the main thread's loop, where signals
    arrive. Books of one file are read once per signal and report once, so a bad edit logs one
    line. Where signal handlers cannot be installed (no loop in the main thread, Windows) this
    does nothing.
    """
    loop = signal_loop()
    if loop is asyncio.get_running_loop():
        return _install_on(loop, book, log)
    removers: list[Callable[[], None]] = []
    loop.call_soon_threadsafe(lambda: removers.append(_install_on(loop, book, log)))

    def remove() -> None:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nothing left to undo
            loop.call_soon_threadsafe(lambda: [undo() for undo in removers])

    return remove


def _install_on(loop: asyncio.AbstractEventLoop, book: TokenBook, log: Log) -> Callable[[], None]:
    books = _hup_books.get(loop)
    if books is None:
        try:
            loop.add_signal_handler(signal.SIGHUP, _reload_all, loop)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            return lambda: None
        books = _hup_books[loop] = {}
    books[id(book)] = (book, log)

    def remove() -> None:
        current = _hup_books.get(loop)
        if current is None or current.pop(id(book), None) is None or current:
            return
        del _hup_books[loop]
        if not loop.is_closed():
            loop.remove_signal_handler(signal.SIGHUP)

    return remove


def _reload_all(loop: asyncio.AbstractEventLoop) -> None:
    done: dict[Path | None, TokenBook | None] = {}  # a file read for this signal → its book if ok
    for book, log in list(_hup_books.get(loop, {}).values()):
        if book.path in done:  # the same file, already read (and reported) for this signal
            first = done[book.path]
            if first is not None:
                book._entries = first._entries
            continue
        error = book.reload()
        done[book.path] = book if error is None else None
        if error is not None:
            log.error("tokens file not reloaded; the previous tokens stay", error=error.message)
        else:
            log.info("tokens file reloaded", path=str(book.path), tokens=len(book))
