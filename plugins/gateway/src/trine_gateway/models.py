"""The JSON shapes of the HTTP API, as msgspec structs: litestar validates request bodies against
them and documents every one in the OpenAPI schema.

Payload fields (``input``, ``result``, ``output``, ``data``) are typed ``Any``: they are the run's
own JSON documents, passed through as they were stored (see :mod:`trine_gateway.serialization`).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from trine_core import MAX_DURATION_MS

RunStatusName = Literal[
    "pending", "running", "suspended", "completed", "failed", "cancelled", "blocked"
]
"""A run's status as the API spells it: the proto enum's name, lower-cased. ``blocked`` is not
final: a workflow error holds the run until it is retried."""

EntryKindName = Literal["step", "sleep", "signal", "child", "cancel", "emit", "patch"]
"""What a journal entry records: a step the worker ran, a wait the engine resolves (a timer, a
signal, a child run), the position where the workflow was told of its cancellation, a custom
event the workflow emitted (its data as ``output``), or a patch marker (``ctx.patched``: its
change id as ``name``)."""

VersioningName = Literal["auto_upgrade", "pinned"]
"""Which builds may continue a run of a function: any (``auto_upgrade``), or only the build it
started on (``pinned``)."""

WorkflowErrorName = Literal["block", "fail"]
"""What a workflow error does to a run of a function: hold it as ``blocked`` until retried, or
fail it for good."""

HISTORY_FORMAT: Final = "trine.history/1"
"""The ``format`` of ``GET /v1/runs/{id}/history``: a change old readers cannot read gets a new
one."""

MAX_BUILD_ID = 200
"""The longest build id a move accepts (a build id is a short label: a digest or a version)."""

NO_SPACE = r"^[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
r"""No white space by Python's definition nor by ECMAScript's: ``\S`` differs between the two
(``\x1c``-``\x1f``, ``\x85``, ``\ufeff``), and clients read the OpenAPI pattern with ECMAScript's
rules (a fuzzer sent ``\x1d``, which the schema allowed and the server refused)."""

WaitKindName = Literal["sleep", "signal", "child"]
"""What a suspended run waits for."""

MAX_TIMEOUT_S = MAX_DURATION_MS // 1000
"""The largest ``timeout_s`` a start accepts (100 years, the engine's bound on every span): enough
for any run, and it keeps the deadline in milliseconds well inside the contract's 64 bits."""


class StartRunBody(msgspec.Struct, forbid_unknown_fields=False):
    """``POST /v1/runs``: which function to run, with what input."""

    function: Annotated[str, msgspec.Meta(min_length=1, description="a registered function")]
    input: Any = None
    timeout_s: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=MAX_TIMEOUT_S,
                description=(
                    "seconds, more than 0: fail the run (RunTimeout) if it has not finished by "
                    "then; rounded up to milliseconds"
                ),
                # litestar drops a 0 bound from the OpenAPI schema; "extra" restores it
                extra_json_schema={"extra": {"exclusiveMinimum": 0}},
            ),
        ]
        | None
    ) = None


class CancelBody(msgspec.Struct):
    """``POST /v1/runs/{id}/cancel``: an optional reason, kept in the run's error message."""

    reason: str = ""


class RetryBody(msgspec.Struct):
    """``POST /v1/runs/{id}/retry``: an optional reason, carried by the ``run.retried`` event."""

    reason: str = ""


class MoveBody(msgspec.Struct):
    """``POST /v1/runs/{id}/move``: the build the run continues on from now."""

    build_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_BUILD_ID,
            pattern=NO_SPACE,
            description="a build a worker registered the run's function with",
        ),
    ]


class ErrorInfoOut(msgspec.Struct):
    type: str
    message: str
    traceback: str


class WaitOut(msgspec.Struct):
    """One thing a suspended run waits for: an unresolved entry of its journal."""

    kind: WaitKindName
    index: int
    """The journal position of the wait."""
    name: str
    """The signal's name, the child's function, or ``sleep``."""
    until: str | None
    """When the timer is due, or when the signal wait times out; ``null`` when it does not."""
    child_run_id: str | None


class KeptSignalsOut(msgspec.Struct):
    """The signals of one name a run keeps: sent while no wait took them, taken oldest first by
    the run's next waits for that name."""

    name: str
    count: int
    bytes: int
    """Their payloads' bytes (JSON), which count toward ``[engine] max_kept_signal_bytes``."""


class RunOut(msgspec.Struct):
    id: str
    function: str
    status: RunStatusName
    input: Any
    result: Any
    """``null`` unless the run completed."""
    error: ErrorInfoOut | None
    attempt: int
    idempotency_key: str | None
    worker_id: str | None
    created_at: str
    """ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    updated_at: str
    cancel_requested: bool
    """A cancellation was asked while the run could clean up: it ends as ``cancelled``."""
    cancel_deadline: str | None
    """When a requested cancellation is forced if the run has not ended; ``null`` if none."""
    parent_run_id: str | None
    """The run that started this one as its child; ``null`` for a run started over the API."""
    deadline: str | None
    """When the run fails with ``RunTimeout`` if it has not finished; ``null`` if never."""
    waiting: list[WaitOut]
    """While ``suspended``: what the run waits for; empty otherwise."""
    build_id: str | None
    """The build of the first worker that reported for the run (a pinned run continues only on
    it); ``null`` until then."""
    blocked_build_id: str | None
    """While ``blocked``: the build whose code raised the run's error; ``null`` otherwise."""
    retries: int
    """How many times the run was retried after failing or being blocked."""
    waiting_for_build: str | None
    """A ``pending`` pinned run no connected worker of its build can take waits for this build;
    ``null`` otherwise."""
    kept_signals: list[KeptSignalsOut]
    """The signals the run keeps because no wait took them yet, per name (sorted by name);
    empty once it has ended. At ``[engine] max_kept_signals`` (or ``max_kept_signal_bytes``) a
    further one is refused with 409 ``kept_signals_full``."""


class SignalOut(msgspec.Struct):
    """``POST /v1/runs/{id}/signals/{name}``: the signal is recorded."""

    run_id: str
    signal: str
    delivered: bool
    """``true``: the run was waiting for this signal and resumes with it. ``false``: it is kept
    until the run waits for a signal of this name."""
    run: RunOut


class RunListOut(msgspec.Struct):
    runs: list[RunOut]
    next_page_token: str | None
    """Pass it back as ``page_token`` for the next page; ``null`` on the last page."""


class JournalEntryOut(msgspec.Struct):
    index: int
    kind: EntryKindName
    name: str
    """The step's name, the signal's name, the child's function, ``sleep``, or the event's name."""
    input_digest: str
    output: Any
    """A step's output, a signal's payload, a child's result, an event's data; ``null`` while
    pending."""
    error: ErrorInfoOut | None
    attempt: int
    started_at: str | None
    ended_at: str | None
    pending: bool
    """A wait not resolved yet: the run is suspended on it."""
    until: str | None
    """When the timer is due, or when the signal wait times out; ``null`` when it does not."""
    child_run_id: str | None


class JournalOut(msgspec.Struct):
    entries: list[JournalEntryOut]


class RetryPolicyOut(msgspec.Struct):
    max_attempts: int
    initial_interval_ms: int
    max_interval_ms: int
    backoff_coefficient: float


class FunctionOut(msgspec.Struct):
    name: str
    retry: RetryPolicyOut | None
    timeout_s: float | None
    """The run timeout its runs get when their start sets none; ``null``: none."""
    versioning: VersioningName
    """Which builds may continue a run of it (``auto_upgrade``: any)."""
    on_workflow_error: WorkflowErrorName
    """What a workflow error does to a run of it (``block``: held until retried)."""
    build_id: str | None
    """The build whose registration set these settings; ``null`` if the worker gave none."""


class FunctionListOut(msgspec.Struct):
    functions: list[FunctionOut]


class RunInFlightOut(msgspec.Struct):
    """A run a worker holds now (a suspended run holds none)."""

    run_id: str
    function: str
    since: str | None
    """When the coordinator dispatched it to this worker (ISO-8601 UTC)."""
    attempt: int
    step: str | None
    """The step it reported as started and has not finished; ``null`` between steps."""


class WorkerOut(msgspec.Struct):
    """One worker process connected to a coordinator."""

    worker_id: str
    session_id: str
    """Its connection: a worker that registers again gets a new one."""
    sdk_version: str | None
    functions: list[str]
    max_concurrency: int
    in_flight: int
    """Runs it holds now (all of them, however many ``runs`` lists)."""
    free_slots: int
    """Runs the coordinator may still dispatch to it: 0 while it drains."""
    runs: list[RunInFlightOut]
    """Its runs in flight, oldest first, at most ``max_runs`` of them."""
    connected_at: str
    last_heartbeat_at: str
    """The last message of any kind its coordinator read from it."""
    draining: bool
    """It finishes what it has and takes nothing more (it is stopping)."""
    coordinator: str
    """The coordinator holding it: the address its workers connect to."""
    build_id: str | None
    """The build it registered with; ``null`` if it gave none."""


class WorkerListOut(msgspec.Struct):
    """``GET /v1/workers``: the workers of every coordinator that answered."""

    workers: list[WorkerOut]
    """By ``worker_id``."""
    unavailable: list[ErrorDetail]
    """The coordinators that did not answer, one error each (their workers are missing from
    ``workers``); empty when every coordinator answered. If none answers: 503."""


class HistoryOut(msgspec.Struct):
    """``GET /v1/runs/{id}/history``: a run and its journal, for ``trine.testing.replay``."""

    format: Literal["trine.history/1"]
    """:data:`HISTORY_FORMAT`: names this shape."""
    exported_at: str
    """When the gateway exported it (ISO-8601 UTC with milliseconds)."""
    run: RunOut
    """The run, exactly as ``GET /v1/runs/{id}`` returns it."""
    journal: list[JournalEntryOut]
    """Its entries, exactly as ``GET /v1/runs/{id}/journal`` returns them."""


class BuildOut(msgspec.Struct):
    """One build the engine knows from its workers' registrations."""

    build_id: str
    functions: list[str]
    """The functions its workers registered."""
    open_runs: int
    """Runs not final whose ``build_id`` is this build."""
    connected: bool
    """A worker of this build asked for work within the last 10 s."""
    last_seen: str | None
    """When a worker of it last registered or asked for work (ISO-8601 UTC); ``null`` if
    unknown."""


class BuildListOut(msgspec.Struct):
    builds: list[BuildOut]
    """By ``build_id``."""


class EventOut(msgspec.Struct):
    """The ``data:`` of one server-sent event; its ``id:`` is ``seq`` and its ``event:`` is
    ``type``."""

    seq: int
    type: str
    name: str
    data: Any
    at: str | None


class EventMessageOut(msgspec.Struct, omit_defaults=True):
    """One message of a run's event stream, as SSE clients parse it (the OpenAPI's schema of the
    ``text/event-stream`` response: schemathesis checks every message against it)."""

    data: str
    """An :class:`EventOut` as compact JSON; for ``stream.error``, ``{"error": {...}}``."""
    event: str | None = None
    """The event's ``type`` (``stream.error`` when the subscription failed mid-stream)."""
    id: str | None = None
    """The event's ``seq``: send it back as ``Last-Event-ID`` to resume after it."""


class HealthOut(msgspec.Struct, omit_defaults=True):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    """Stable: ``invalid_request``, ``malformed_json``, ``unknown_function``, ``run_not_found``…"""
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct):
    """Every error response: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorDetail
