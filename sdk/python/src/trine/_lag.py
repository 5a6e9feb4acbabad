"""The loop-lag monitor: a loud warning, naming the culprit, when code blocks the event loop.

Everything a worker does shares one event loop: its heartbeats, its reports, every run in flight.
Async code that blocks (``time.sleep``, a sync HTTP client, heavy CPU work in an ``async def``)
stops all of it, and after a few missed heartbeats the coordinator drops the worker and gives its
runs to another. That failure is silent and far from its cause, so this module watches the loop
from a thread: the loop stamps a time every ``tick``; when the stamp is late by more than the
threshold the thread logs a WARNING *while the loop is still blocked*, naming what is running on
it (a step, or a workflow between steps: see ``label``), and logs again once the loop runs, with
how long it was blocked. The threshold (``Worker(loop_lag_warning=...)``) is meant to be far
below the coordinator's limit (five heartbeat intervals), so the warning comes first.

The labels are read from the monitor thread: a plain dict written only on the loop's thread,
read with ``dict.get`` (atomic under the GIL), is enough.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

log = logging.getLogger("trine.worker")

_labels: dict[asyncio.Future[Any], str] = {}


def label(task: asyncio.Future[Any], text: str) -> None:
    """Name what ``task`` runs (``step 'x' of workflow 'f' (run r)``) for the warning."""
    _labels[task] = text


def unlabel(task: asyncio.Future[Any]) -> None:
    _labels.pop(task, None)


class LagMonitor:
    """Watches one event loop from a daemon thread; ``start`` on the loop, ``stop`` when done."""

    def __init__(self, threshold: float) -> None:
        if threshold <= 0:
            raise ValueError("the loop lag threshold must be positive seconds")
        self.threshold = threshold
        # Stamp often enough that a healthy loop is never late by a noticeable part of the limit.
        self.tick = min(0.1, threshold / 5)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stamp = time.monotonic()
        self._blocked_since: float | None = None  # set by the thread, cleared by the loop
        self._busy = False  # what the thread found: a busy loop rather than a blocked one
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stamp = time.monotonic()
        self._beat()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._watch, name="trine-loop-lag", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        """On the loop: stamp the time, close a block the thread reported, come back in a tick."""
        self._stamp = time.monotonic()
        since, self._blocked_since = self._blocked_since, None
        if since is not None:
            log.warning(
                "the event loop runs again after being %s for %.1fs",
                "busy" if self._busy else "blocked",
                self._stamp - since,
            )
        assert self._loop is not None
        self._handle = self._loop.call_later(self.tick, self._beat)

    def _watch(self) -> None:
        """On the thread: compare the loop's last stamp with the clock, every tick; warn once
        per block, while it lasts (the loop's next beat says when it ended).

        While the beat is overdue, what the loop runs is sampled every tick: one task (or one
        callback) all along is a blocking call, and is named; several are a loop that is busy
        rather than blocked (too much work for one process), which gets a different warning.
        """
        seen: list[object] = []
        seen_for = 0.0
        while not self._stopped.wait(self.tick):
            due = self._stamp + self.tick  # when the loop should have stamped again
            if due != seen_for:
                seen, seen_for = [], due
            late = time.monotonic() - due
            if late <= 0:
                continue
            seen.append(self._running())
            if late > self.threshold and self._blocked_since is None:
                self._busy = any(task is not seen[0] for task in seen)
                self._blocked_since = due
                if self._busy:
                    log.warning(
                        "the event loop is busy: its timers (the heartbeats too) run %.1fs late, "
                        "with no single blocking call to blame; too much work for one process: "
                        "lower max_concurrency, move CPU-heavy code into sync steps, or run more "
                        "workers",
                        late,
                    )
                else:
                    log.warning(
                        "the event loop has been blocked for %.1fs by %s: blocking code in async "
                        "code stops the heartbeats and every other run (the coordinator drops a "
                        "worker that stays silent); make a blocking step a sync function (it "
                        "runs in a thread) or await non-blocking calls",
                        late,
                        _describe(seen[0]),
                    )

    def _running(self) -> asyncio.Task[Any] | None:
        """The task the loop runs now (None: a plain callback, or nothing)."""
        return asyncio.current_task(self._loop) if self._loop is not None else None


def _describe(task: object) -> str:
    """A task as precisely as the labels allow."""
    if not isinstance(task, asyncio.Task):
        return "a callback outside any run"
    return _labels.get(task) or f"task {task.get_name()!r}"
