"""Builds (docs/versioning.md, "Builds"): which builds registered which functions, which builds
ask for work now, and which build a pinned run may be given to.

Two kinds of knowledge, kept apart on purpose:

- *Registrations* are durable: the ``FunctionsRegistered`` applier records each (build, function)
  pair here and in ``meta`` (:func:`~trine_engine.storage.keys.build_key`), so a move to a build
  is checked against every build that ever registered the run's function, across restarts.
- *Takers* are in memory only, like leases: when a worker of a build last asked for work, and how
  many ``take_work`` calls of it are waiting now. A build is *connected* while one waits or one
  asked within :data:`CONNECTED_MS`; a pending pinned run whose build is not connected shows it
  in ``Run.waiting_for_build`` (derived, never stored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from trine_engine.storage import Store
from trine_engine.storage.keys import BUILDS_PREFIX, META, build_key, split_build_key
from trine_proto.codec import decode
from trine_proto.trine.v1 import BuildInfo, FunctionSpec, Run, RunStatus, VersioningMode

CONNECTED_MS = 10_000
"""A build whose worker asked for work within this long is connected."""


def pinned(spec: FunctionSpec | None) -> bool:
    return spec is not None and spec.versioning == VersioningMode.PINNED


def pin_of(functions: Mapping[str, FunctionSpec], run: Run) -> str:
    """The only build that may take ``run`` now, or "" when any may: a run of a pinned function
    is given only to its own build once it has one (its first reporter's, or a move's)."""
    if run.build_id and pinned(functions.get(run.function)):
        return str(run.build_id)
    return ""


@dataclasses.dataclass(slots=True)
class _Taker:
    last_ms: int = 0
    """When a ``take_work`` of this build last began or ended."""
    waiting: int = 0
    """``take_work`` calls of this build waiting for work now."""


class BuildBook:
    def __init__(self) -> None:
        self._registered: dict[str, dict[str, FunctionSpec]] = {}
        """Durable: build → the functions its workers registered, as each last registered it."""
        self._seen_ms: dict[str, int] = {}
        """In memory: when a worker of the build last registered or asked for work."""
        self._takers: dict[str, _Taker] = {}

    # -- registrations (durable, through the FunctionsRegistered applier) -----------------------

    def load(self, store: Store) -> None:
        """The registrations recorded before this open."""
        for key, value in store.scan(META, prefix=BUILDS_PREFIX):
            build, function = split_build_key(key)
            self._registered.setdefault(build, {})[function] = decode(FunctionSpec, value)

    def record(self, spec: FunctionSpec) -> bytes | None:
        """Note that ``spec.build_id`` registered ``spec``; the ``meta`` key to store it under, or
        None for a registration without a build."""
        build = spec.build_id
        if not build:
            return None
        self._registered.setdefault(build, {})[spec.name] = spec
        return build_key(build, spec.name)

    def registered(self, build: str, function: str) -> bool:
        return function in self._registered.get(build, {})

    # -- takers (in memory) ------------------------------------------------------------------------

    def registering(self, build: str, now_ms: int) -> None:
        if build:
            self._seen_ms[build] = max(self._seen_ms.get(build, 0), now_ms)

    def taking(self, build: str, now_ms: int) -> None:
        """A ``take_work`` of ``build`` began: it is connected until :meth:`took` and
        :data:`CONNECTED_MS` after."""
        if build:
            taker = self._takers.setdefault(build, _Taker())
            taker.waiting += 1
            taker.last_ms = max(taker.last_ms, now_ms)
            self._seen_ms[build] = max(self._seen_ms.get(build, 0), now_ms)

    def took(self, build: str, now_ms: int) -> None:
        taker = self._takers.get(build) if build else None
        if taker is not None:
            taker.waiting = max(0, taker.waiting - 1)
            taker.last_ms = max(taker.last_ms, now_ms)
            self._seen_ms[build] = max(self._seen_ms.get(build, 0), now_ms)

    def connected(self, build: str, now_ms: int) -> bool:
        taker = self._takers.get(build)
        return taker is not None and (taker.waiting > 0 or now_ms - taker.last_ms <= CONNECTED_MS)

    def waiting_for(self, functions: Mapping[str, FunctionSpec], run: Run, now_ms: int) -> str:
        """The build a pending pinned run waits for (no worker of it asks for work), else ""."""
        if run.status != RunStatus.PENDING:
            return ""
        build = pin_of(functions, run)
        return "" if not build or self.connected(build, now_ms) else build

    # -- listing -----------------------------------------------------------------------------------

    def infos(self, open_runs: Iterable[Run], now_ms: int) -> list[BuildInfo]:
        """Every build known from registrations, takers and open runs, in build id order."""
        counts: dict[str, int] = {}
        for run in open_runs:
            if run.build_id:
                counts[run.build_id] = counts.get(run.build_id, 0) + 1
        builds = set(self._registered) | set(self._takers) | set(counts)
        return [
            BuildInfo(
                build_id=build,
                functions=sorted(self._registered.get(build, {})),
                open_runs=counts.get(build, 0),
                connected=self.connected(build, now_ms),
                last_seen_ms=self._seen_ms.get(build, 0),
            )
            for build in sorted(builds)
        ]
