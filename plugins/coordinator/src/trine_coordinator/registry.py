"""The coordinator's ``WorkerRegistry``: its connected workers as the gateway lists them.

Read from the worker sessions of :class:`~trine_coordinator.service.WorkerService` at each call,
on the event loop, so an answer is one consistent moment of this coordinator. A coordinator
names itself by the address its workers connect to (``worker_addr``; a wildcard host is replaced
by the host's name), so the gateway can tell the workers of several coordinators apart.
"""

from __future__ import annotations

import socket

from trine_coordinator.service import WorkerService
from trine_coordinator.session import WorkerSession
from trine_core import DEFAULT_WORKER_SCHEME, join_host_port, split_host_port, worker_address
from trine_proto.trine.v1 import ListWorkersRequest, ListWorkersResponse, RunInFlight, WorkerInfo

DEFAULT_MAX_RUNS = 100
"""Runs listed per worker when the request's ``max_runs`` is 0."""
MAX_RUNS = 1000
"""Runs listed per worker at most, whatever the request asks (``in_flight`` counts them all)."""
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def coordinator_name(worker_addr: str) -> str:
    """How a coordinator listening for workers on ``worker_addr`` names itself: ``host:port``,
    with its scheme unless it is the default (``grpc://``)."""
    scheme, _, rest = worker_address(worker_addr).partition("://")
    host, port = split_host_port(rest, "worker_addr")
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
    name = join_host_port(host, port)
    return name if scheme == DEFAULT_WORKER_SCHEME else f"{scheme}://{name}"


class CoordinatorRegistry:
    """A :class:`~trine_core.WorkerRegistry` over one coordinator's worker sessions."""

    def __init__(self, service: WorkerService, name: str) -> None:
        self.service = service
        self.name = name

    async def list_workers(self, message: ListWorkersRequest) -> ListWorkersResponse:
        limit = min(message.max_runs or DEFAULT_MAX_RUNS, MAX_RUNS)
        sessions = sorted(self.service.sessions.values(), key=lambda s: s.worker_id)
        return ListWorkersResponse(
            workers=[self._info(session, limit) for session in sessions if not session.closed],
            coordinator=self.name,
        )

    def _info(self, session: WorkerSession, limit: int) -> WorkerInfo:
        runs = []
        for run_id in session.in_flight:
            flight = session.flights.get(run_id)
            runs.append(
                RunInFlight(
                    run_id=run_id,
                    function=flight.function if flight else "",
                    since_ms=flight.since_ms if flight else 0,
                    attempt=flight.attempt if flight else 0,
                    step=session.steps.get(run_id, ""),
                )
            )
        runs.sort(key=lambda run: run.since_ms)  # stable: dispatch order within a millisecond
        return WorkerInfo(
            worker_id=session.worker_id,
            session_id=session.session_id,
            sdk_version=session.sdk_version,
            functions=list(session.functions),
            max_concurrency=session.max_concurrency,
            in_flight=len(session.in_flight),
            free_slots=session.free_slots,
            runs=runs[:limit],
            connected_at_ms=int(session.connected_at * 1000),
            last_heartbeat_at_ms=session.last_heard_ms,
            draining=session.draining,
            coordinator=self.name,
            build_id=session.build_id,
        )
