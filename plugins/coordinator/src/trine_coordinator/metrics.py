"""The coordinator's instruments (issue 11), in core's process registry; ``trine-metrics``
exports them.

The gauges are read from the worker sessions at collection time (:func:`watch`), on the event
loop, which is where ``trine-metrics`` collects. A coordinator process of a split serves them on
its own ``[metrics] addr``.
"""

from __future__ import annotations

from collections.abc import Callable

from trine_coordinator.session import WorkerSession
from trine_core.instruments import REGISTRY

WORKERS_CONNECTED = REGISTRY.gauge(
    "trine_workers_connected",
    "Worker processes with a registered stream to this coordinator (draining ones included).",
)
WORKER_SLOTS_FREE = REGISTRY.gauge(
    "trine_worker_slots_free",
    "Free slots over the connected workers: max_concurrency minus runs in flight (0 for a "
    "draining worker). What the coordinator may still dispatch now.",
)
WORKER_RUNS_IN_FLIGHT = REGISTRY.gauge(
    "trine_worker_runs_in_flight",
    "Runs dispatched to a connected worker and not yet finished, suspended or retried.",
)
WORKERS_LOST = REGISTRY.counter(
    "trine_workers_lost_total",
    "Worker sessions lost (silent past five heartbeat intervals, stream broken, replaced by a "
    "new session of the same worker): their runs were dispatched again. A drain is not a loss.",
)

WORKERS_REFUSED = REGISTRY.counter(
    "trine_workers_refused_total",
    "Worker streams refused before registering (issue 13), by reason: unauthenticated (no token, "
    "or one the tokens file does not know), permission_denied (no 'worker' scope, or functions "
    "the token may not serve), already_exists (a live worker holds the worker_id), revoked (a "
    "session closed when a reload of the tokens file revoked its token), invalid_argument (the "
    "engine refused the registration: a function without a name, a timeout past 100 years).",
    ("reason",),
)

REFUSAL_REASONS = {"worker_id_in_use": "already_exists"}
"""The ``reason`` label of a refusal whose error code is not its label (the label predates the
code: dashboards match on it)."""


def refusal_reason(code: str) -> str:
    """The ``trine_workers_refused_total`` label of a refusal with error ``code``."""
    return REFUSAL_REASONS.get(code, code)


def watch(sessions: dict[str, WorkerSession]) -> Callable[[], None]:
    """Read the gauges of one coordinator from its sessions at each collection; returns the
    function that stops it."""

    def current() -> list[WorkerSession]:
        return list(sessions.values())

    removers = [
        WORKERS_CONNECTED.add_callback(lambda: float(len(sessions))),
        WORKER_SLOTS_FREE.add_callback(lambda: float(sum(s.free_slots for s in current()))),
        WORKER_RUNS_IN_FLIGHT.add_callback(lambda: float(sum(len(s.in_flight) for s in current()))),
    ]

    def stop() -> None:
        for remove in removers:
            remove()

    return stop
