"""The builds :class:`~trine_core.testing.memory.MemoryEngine` knows of, as the engine keeps them
(docs/versioning.md, "Builds"): learnt from registrations that carry a build id, seen again at
every ``take_work`` of a taker of that build. A registration without a build id (an SDK from
before builds) adds no build: its runs have no build to be pinned to or moved to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from trine_proto.trine import v1 as pb

CONNECTED_MS = 10_000
"""A build is connected while a worker of it asked for work within this long."""


@dataclasses.dataclass
class Build:
    functions: set[str] = dataclasses.field(default_factory=set)
    last_seen_ms: int = 0
    """When a worker of it last registered or asked for work."""
    last_take_ms: int | None = None
    """When a worker of it last asked for work (None: never)."""


class Builds:
    def __init__(self) -> None:
        self._builds: dict[str, Build] = {}

    def registered(self, build_id: str, functions: Iterable[str], now: int) -> None:
        if build_id:
            build = self._builds.setdefault(build_id, Build())
            build.functions.update(functions)
            build.last_seen_ms = now

    def took(self, build_id: str, now: int) -> None:
        """A worker of ``build_id`` asked for work (a build it never registered is not known:
        nothing can be moved to it)."""
        if (build := self._builds.get(build_id)) is not None:
            build.last_seen_ms = build.last_take_ms = now

    def serves(self, build_id: str, function: str) -> bool:
        """Whether a worker registered ``function`` with ``build_id``."""
        build = self._builds.get(build_id)
        return build is not None and function in build.functions

    def known_for(self, function: str) -> list[str]:
        """The builds a worker registered ``function`` with, for an error naming them."""
        return sorted(b for b, build in self._builds.items() if function in build.functions)

    def connected(self, build_id: str, now: int) -> bool:
        build = self._builds.get(build_id)
        taken = build.last_take_ms if build is not None else None
        return taken is not None and now - taken <= CONNECTED_MS

    def infos(self, open_runs: dict[str, int], now: int) -> list[pb.BuildInfo]:
        """Every build in build id order; ``open_runs`` counts the runs not final, by build."""
        return [
            pb.BuildInfo(
                build_id=build_id,
                functions=sorted(build.functions),
                open_runs=open_runs.get(build_id, 0),
                connected=self.connected(build_id, now),
                last_seen_ms=build.last_seen_ms,
            )
            for build_id, build in sorted(self._builds.items())
        ]
