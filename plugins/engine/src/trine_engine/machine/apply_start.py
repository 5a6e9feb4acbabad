"""Applying the records that create things: registered functions, and runs (a started run, or the
children a report starts, created in the same batch as that report)."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from trine_core import StorageError
from trine_engine import metrics
from trine_engine.idem import idem_row
from trine_engine.machine import timeouts
from trine_engine.machine.events import NewEvents
from trine_engine.run_state import RunState
from trine_engine.storage.keys import ACTIVE, FUNCTIONS, IDEM, META, RUNS
from trine_proto.codec import encode
from trine_proto.trine.engine.v1 import FunctionsRegistered, RunStarted
from trine_proto.trine.v1 import Run, RunStatus

if TYPE_CHECKING:
    from trine_engine.machine.machine import StateMachine
    from trine_engine.storage import AppendBatch


def functions_registered(
    machine: StateMachine, record: FunctionsRegistered, batch: AppendBatch
) -> None:
    """The registered settings replace the function's; a registration with a build also records
    that the build serves the function (a move to it is allowed from then on). A change of a
    function's versioning changes which build may take its queued runs."""
    for spec in record.functions:
        before = machine.functions.get(spec.name)
        machine.functions[spec.name] = spec
        value = encode(spec)
        batch.put(FUNCTIONS, spec.name.encode(), value)
        key = machine.builds.record(spec)
        if key is not None:
            batch.put(META, key, value)
        if before is not None and before.versioning != spec.versioning:
            machine.scheduler.repin(spec.name)


def run_started(machine: StateMachine, record: RunStarted, batch: AppendBatch) -> None:
    if record.run is None:
        raise StorageError("RunStarted record without a run")
    create(machine, record.run, batch, record.request_digest)


def create(
    machine: StateMachine, accepted: Run, batch: AppendBatch, request_digest: bytes = b""
) -> None:
    """A new run, pending, with its ``run.started`` event; dispatchable once durable. A run
    with an idempotency key keeps ``request_digest`` in the key's row."""
    events = NewEvents(accepted.id, 0, accepted.created_at_ms)
    events.run_started(accepted.function)
    run = dataclasses.replace(
        accepted, status=RunStatus.PENDING, last_event_seq=len(events), journal_length=0
    )
    state = RunState(run=run)
    machine.cache.add(state)
    key = run.id.encode()
    batch.put(RUNS, key, encode(run))
    batch.put(ACTIVE, key, b"")
    machine.add_events(state, events, batch)
    if run.idempotency_key:
        batch.put(IDEM, run.idempotency_key.encode(), idem_row(run.id, request_digest))
    if run.deadline_ms:
        timeouts.arm_deadline(machine, state, run.deadline_ms)
    machine.publish(state, batch)
    batch.after_commit(functools.partial(machine.scheduler.make_dispatchable, state))
    metrics.RUNS_STARTED.labels(run.function).inc()
