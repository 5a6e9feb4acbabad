"""A worker's default build id: a digest of the code it serves (docs/versioning.md, "Builds").

The engine uses build ids to keep a pinned run on the code that started it and to resume a
blocked run once other code registers, so the default must change with any edit of the
workflows and stay the same across restarts of the same code: a digest of the source of the
modules that define the registered functions. Their files are read (bytes, no parsing), once per
start; a function with no file (typed into a REPL) counts by its compiled code.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BUILD_ID_DIGITS = 12


def code_digest(functions: Iterable[Callable[..., Any]]) -> str:
    """12 hex digits over the source of the modules defining ``functions``, in module order."""
    by_module: dict[str, list[Callable[..., Any]]] = {}
    for fn in functions:
        fn = inspect.unwrap(fn)
        by_module.setdefault(getattr(fn, "__module__", None) or "", []).append(fn)
    hasher = hashlib.sha256()
    for name in sorted(by_module):
        hasher.update(name.encode() + b"\0")
        hasher.update(_source(name, by_module[name]))
        hasher.update(b"\0")
    return hasher.hexdigest()[:BUILD_ID_DIGITS]


def _source(module_name: str, functions: list[Callable[..., Any]]) -> bytes:
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path:
        try:
            return Path(path).read_bytes()
        except OSError:
            pass
    parts: list[bytes] = []
    for fn in sorted(functions, key=lambda f: getattr(f, "__qualname__", "")):
        code = getattr(fn, "__code__", None)
        try:
            parts.append(marshal.dumps(code))
        except ValueError:
            parts.append(repr(fn).encode())
    return b"\0".join(parts)
