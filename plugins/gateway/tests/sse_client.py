"""Reading a gateway's server-sent events in tests: what a stream carried, frame by frame."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Sse:
    """What an event stream carried: its events (``id``, ``event``, parsed ``data``), comments."""

    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False


class SseReader:
    """Reads one response's frames across several calls (a test acts between them)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def read(self, limit: int | None = None, until_comment: bool = False) -> Sse:
        """Frames until the stream ends, ``limit`` events came, or (``until_comment``) a
        comment."""
        sse = Sse()
        current: dict[str, Any] = {}
        async for line in self._lines:
            if line.startswith(":"):
                sse.comments.append(line[1:].strip())
                if until_comment:
                    return sse
                continue
            if not line:
                if current:
                    sse.events.append(current)
                    if limit is not None and len(sse.events) >= limit:
                        return sse
                current = {}
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[key] = json.loads(value) if key == "data" else value
        sse.ended = True
        return sse


async def read_sse(response: httpx.Response, limit: int | None = None) -> Sse:
    return await SseReader(response).read(limit)
