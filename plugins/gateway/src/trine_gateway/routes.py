"""The HTTP handlers. Each one calls the :class:`~trine_core.protocols.Backend` and turns its
proto answer into the API's JSON (:mod:`trine_gateway.serialization`); errors are the exception
handlers' business (:mod:`trine_gateway.errors`).

Handler parameters use litestar's explicit markers (``FromPath``, ``QueryParameter``,
``HeaderParameter``, ``JSONBody``, ``NamedDependency``): litestar 2.25 warns about inferred ones,
and annotations are resolved at runtime, so every name used in one is imported at module level.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Response, get, post, route
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import (
    Body,
    FromPath,
    HeaderParameter,
    JSONBody,
    PathParameter,
    QueryParameter,
)

from trine_core import (
    MAX_SIGNAL_NAME,
    Backend,
    InvalidArgument,
    TrineError,
    Unavailable,
    WorkerRegistry,
    check_signal_name,
    error_from_code,
    get_logger,
    tracing,
)
from trine_gateway.body import JsonRequest
from trine_gateway.lifecycle import Lifecycle
from trine_gateway.models import (
    BuildListOut,
    CancelBody,
    ErrorBody,
    ErrorDetail,
    EventMessageOut,
    FunctionListOut,
    HealthOut,
    HistoryOut,
    JournalOut,
    MoveBody,
    RetryBody,
    RunListOut,
    RunOut,
    RunStatusName,
    SignalOut,
    StartRunBody,
    WorkerListOut,
)
from trine_gateway.serialization import (
    STATUS_BY_NAME,
    build_out,
    encode_input,
    function_out,
    history_out,
    journal_entry_out,
    run_out,
    worker_out,
)
from trine_gateway.sse import EventStream, Stream
from trine_proto.trine.v1 import (
    CancelRunRequest,
    GetJournalRequest,
    GetRunRequest,
    ListBuildsRequest,
    ListFunctionsRequest,
    ListRunsRequest,
    ListWorkersRequest,
    ListWorkersResponse,
    MoveRunRequest,
    RetryRunRequest,
    Run,
    RunStatus,
    SignalRunRequest,
    StartRunRequest,
    WaitRunRequest,
)
from trine_proto.vocabulary import SIGNAL_NAME, is_final, timeout_to_ms

log = get_logger("gateway")

MAX_WAIT_S = 300.0
MAX_SEQ = (1 << 32) - 1

MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_KEY = re.compile(rf"[ -~]{{1,{MAX_IDEMPOTENCY_KEY}}}")
"""An Idempotency-Key: 1 to 255 printable ASCII characters (as the IETF draft's header is). A
header is read as latin-1, so a UTF-8 key would be stored garbled; a long one costs storage."""
PAGE_TOKEN = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
"""A page token is the previous page's last run id: a 26-character ULID (docs/internals.md)."""

# litestar leaves ``gt``/``ge`` out of the OpenAPI schema of an optional parameter (and a 0
# bound altogether): ``schema_extra`` states each bound the server enforces (issue 14).
WaitSeconds = Annotated[
    float | None,
    QueryParameter(
        gt=0,
        le=MAX_WAIT_S,
        description="long-poll: wait up to this many seconds for the run to reach a final state",
        schema_extra={"exclusiveMinimum": 0, "maximum": MAX_WAIT_S},
    ),
]
RunId = FromPath[str]
START_WAIT_S = 2.0
"""The most of a ``POST /v1/runs?wait`` spent in the start call itself (its ``wait_ms``): a run
final by then costs one call to the engine, not a start and a ``wait_run``. That part of the wait
is not cut short when shutdown begins (cancelling the call would lose the answer of a run already
started), so it stays well below ``server.GRACEFUL_SHUTDOWN_S``; the rest of a longer wait is a
``wait_run``, which shutdown ends at once."""
DEFAULT_MAX_RUNS = 100
NO_COORDINATOR = (
    "no coordinator is wired to this gateway, so it cannot list workers: run the coordinator "
    "role in this process (--target=all), install trine-coordinator beside the gateway (it is "
    "then dialled at grpc:// + [coordinator] addr), or name it: [connect] worker_registry = "
    '"grpc://host:port" (several coordinators: comma-separated)'
)


@dataclass(frozen=True)
class Gateway:
    """What the handlers share, injected as the ``gateway`` dependency."""

    backend: Backend
    ready: Callable[[], bool]
    lifecycle: Lifecycle
    keepalive_s: float = 15.0
    registries: Sequence[WorkerRegistry] = ()
    """Every coordinator's worker registry wired to this gateway: none, one, or several."""

    async def wait(self, run: Run, wait_s: float) -> Run:
        """The run once final, or as it is after ``wait_s`` (or when shutdown begins)."""
        if is_final(run.status):
            return run
        wait_ms = max(1, round(wait_s * 1000))
        return await self.lifecycle.until_stopping(
            self.backend.wait_run(WaitRunRequest(run_id=run.id, wait_ms=wait_ms)),
            lambda: self.backend.get_run(GetRunRequest(run_id=run.id)),
        )

    def stream(self, run_id: str, after_seq: int) -> Stream:
        """The run's events after ``after_seq`` as an SSE body (trine_gateway.sse)."""
        return Stream(self.backend, self.lifecycle, run_id, after_seq, self.keepalive_s)

    async def event_stream(
        self, run_id: str, after: int | None, last_event_id: int | None
    ) -> EventStream:
        """The litestar response of a run's event stream, resumed after ``Last-Event-ID`` or
        else ``?after``: 404 for an unknown run and 503 while the gateway shuts down, answered
        before the stream starts."""
        await self.backend.get_run(GetRunRequest(run_id=run_id))
        if self.lifecycle.closing:
            raise Unavailable("the gateway is shutting down")
        after_seq = last_event_id if last_event_id is not None else (after or 0)
        return EventStream(self.stream(run_id, after_seq))

    async def workers(self, max_runs: int = DEFAULT_MAX_RUNS) -> WorkerListOut:
        """The workers of every coordinator, asked at once. A coordinator that does not answer
        is named in ``unavailable``; when none answers (or none is wired) this raises, and the
        API answers 503."""
        if not self.registries:
            raise Unavailable(NO_COORDINATOR)
        request = ListWorkersRequest(max_runs=max_runs)
        answers: list[ListWorkersResponse | BaseException] = await asyncio.gather(
            *(registry.list_workers(request) for registry in self.registries),
            return_exceptions=True,
        )
        listed: list[ListWorkersResponse] = []
        failed: list[TrineError] = []
        for answer in answers:
            if isinstance(answer, TrineError):
                failed.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                listed.append(answer)
        if not listed:
            first = failed[0]
            message = f"no coordinator answered ({len(failed)} asked): {first.message}"
            raise error_from_code(first.code, message, **first.details)
        workers = sorted(
            (worker for answer in listed for worker in answer.workers),
            key=lambda worker: (worker.worker_id, worker.coordinator),
        )
        return WorkerListOut(
            workers=[worker_out(worker) for worker in workers],
            unavailable=[ErrorDetail(code=e.code, message=e.message) for e in failed],
        )


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(ErrorBody, generate_examples=False, description="an error")
        for status in statuses
    }


def _timeout_ms(timeout_s: float | None) -> int:
    """A start's ``timeout_s`` as the request's ``timeout_ms``: 0 (no deadline) when absent,
    else at least 1, since a tiny timeout (it is > 0) must not round to "no deadline"."""
    return 0 if timeout_s is None else timeout_to_ms(timeout_s)


@post(
    "/v1/runs",
    status_code=201,
    summary="Start a run",
    description=(
        "201: a new run. 200: the Idempotency-Key was used before; this is that run. "
        "202: with ?wait, the run is not final yet. 422 idempotency_conflict: the key started a "
        "run with another function, input or timeout."
    ),
    tags=["runs"],
    responses={
        200: ResponseSpec(RunOut, generate_examples=False, description="an earlier run"),
        202: ResponseSpec(RunOut, generate_examples=False, description="not final yet"),
        **_errors(400, 404, 413, 422),
    },
    request_class=JsonRequest,
)
async def start_run(
    gateway: NamedDependency[Gateway],
    data: JSONBody[StartRunBody],
    wait: WaitSeconds = None,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            description=(
                f"start at most one run per key: 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII "
                "characters"
            ),
            schema_extra={
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
                "pattern": f"^{IDEMPOTENCY_KEY.pattern}$",
            },
        ),
    ] = None,
    traceparent: Annotated[
        str | None,
        HeaderParameter(
            name="traceparent",
            description="W3C Trace Context: the run's spans join the caller's trace, under this",
        ),
    ] = None,
    tracestate: Annotated[
        str | None, HeaderParameter(name="tracestate", description="W3C Trace Context")
    ] = None,
) -> Response[RunOut]:
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    caller = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        caller["tracestate"] = tracestate
    with tracing.span(
        "POST /v1/runs",
        caller,
        kind=tracing.SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/v1/runs",
            "trine.function": data.function,
        },
    ) as span:
        start_wait_s = 0.0 if wait is None or gateway.lifecycle.closing else min(wait, START_WAIT_S)
        started = await gateway.backend.start_run(
            StartRunRequest(
                function=data.function,
                input=encode_input(data.input),
                idempotency_key=idempotency_key or "",
                timeout_ms=_timeout_ms(data.timeout_s),
                trace_context=caller if span is None else tracing.inject(),
                wait_ms=round(start_wait_s * 1000),
            )
        )
        run = started.run
        if run is None:
            raise TrineError("the backend started a run but did not answer it")
        if span is not None:
            span.set_attribute("trine.run_id", run.id)
    status = 201 if started.created else 200
    if wait is not None:
        # A backend that did not wait in the start (a fake, an older engine) is waited for here,
        # as is the rest of a wait longer than START_WAIT_S.
        rest = wait - start_wait_s if started.waited else wait
        if rest > 0:
            run = await gateway.wait(run, rest)
        if not is_final(run.status):
            status = 202
    return Response(run_out(run), status_code=status)


@get(
    "/v1/runs/{run_id:str}",
    summary="Read a run",
    tags=["runs"],
    responses=_errors(400, 404),
)
async def read_run(
    gateway: NamedDependency[Gateway], run_id: RunId, wait: WaitSeconds = None
) -> RunOut:
    run = await gateway.backend.get_run(GetRunRequest(run_id=run_id))
    if wait is not None:
        run = await gateway.wait(run, wait)
    return run_out(run)


@get(
    "/v1/runs",
    summary="List runs in creation order",
    description=(
        "Oldest first, a page at a time; `newest_first=true` lists the newest first (the next "
        "pages go on towards older runs)."
    ),
    tags=["runs"],
    responses=_errors(400),
)
async def list_runs(
    gateway: NamedDependency[Gateway],
    status: Annotated[RunStatusName | None, QueryParameter(description="only runs in it")] = None,
    function: Annotated[str | None, QueryParameter(description="only runs of it")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000, description="page size")] = 50,
    page_token: Annotated[
        str | None,
        QueryParameter(
            description="the previous page's next_page_token",
            # empty: the first page, as when it is left out
            schema_extra={"pattern": f"^(?:{PAGE_TOKEN.pattern})?$"},
        ),
    ] = None,
    newest_first: Annotated[
        bool,
        QueryParameter(description="the newest runs first (pass the same on every page)"),
    ] = False,
) -> RunListOut:
    if page_token and PAGE_TOKEN.fullmatch(page_token) is None:
        raise InvalidArgument(
            f"page_token {page_token[:40]!r} is not a page token: pass back a next_page_token "
            "(the last run id of the previous page, 26 characters)",
            page_token=page_token[:40],
        )
    page = await gateway.backend.list_runs(
        ListRunsRequest(
            status=STATUS_BY_NAME[status] if status else RunStatus.UNSPECIFIED,
            function=function or "",
            limit=limit,
            page_token=page_token or "",
            newest_first=newest_first,
        )
    )
    return RunListOut(
        runs=[run_out(run) for run in page.runs], next_page_token=page.next_page_token or None
    )


@get(
    "/v1/runs/{run_id:str}/journal",
    summary="A run's journal: its steps, waits (sleeps, signals, child runs) and cancellation",
    description=(
        "One entry per completed or finally failed step, and one per wait: `kind` is step, "
        "sleep, signal, child, cancel, emit (a custom event) or patch (a `ctx.patched` marker, "
        "its change id as `name`); a wait not resolved yet is `pending`."
    ),
    tags=["runs"],
    responses=_errors(404),
)
async def read_journal(gateway: NamedDependency[Gateway], run_id: RunId) -> JournalOut:
    journal = await gateway.backend.get_journal(GetJournalRequest(run_id=run_id))
    return JournalOut(entries=[journal_entry_out(entry) for entry in journal.entries])


@get(
    "/v1/runs/{run_id:str}/history",
    summary="A run's history: the run and its journal, for replay checks",
    description=(
        "The `trine.history/1` format: `{format, exported_at, run, journal}`, where `run` is the "
        "run exactly as `GET /v1/runs/{id}` returns it and `journal` its entries exactly as "
        "`GET /v1/runs/{id}/journal` returns them. `trine.testing.replay(worker, history)` "
        "replays it against a worker's code (`trine replay` does it for the latest runs). A "
        "change that older readers cannot read gets a new `format`."
    ),
    tags=["runs"],
    responses=_errors(404),
)
async def read_history(gateway: NamedDependency[Gateway], run_id: RunId) -> HistoryOut:
    run = await gateway.backend.get_run(GetRunRequest(run_id=run_id))
    journal = await gateway.backend.get_journal(GetJournalRequest(run_id=run_id))
    return history_out(run, journal.entries, int(time.time() * 1000))


@post(
    "/v1/runs/{run_id:str}/retry",
    status_code=200,
    summary="Retry a failed or blocked run",
    description=(
        "Resumes a `failed` run (a step's final error, a workflow error, a timeout, lost "
        "workers) or a `blocked` one from its journal, with the same id: the journal is cut at "
        "its first entry holding an error, so the steps that succeeded before it replay and "
        "the failed step runs again on the code the workers run today. The run is `pending` "
        "again, its error cleared and `retries` one more; the `run.retried` event carries the "
        "optional `reason`. 409 run_not_retryable: the run is neither failed nor blocked."
    ),
    tags=["runs"],
    responses=_errors(400, 404, 409),
    request_class=JsonRequest,
)
async def retry_run(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    data: JSONBody[RetryBody | None] = None,
) -> RunOut:
    reason = data.reason if data is not None else ""
    run = await gateway.backend.retry_run(RetryRunRequest(run_id=run_id, reason=reason))
    return run_out(run)


@post(
    "/v1/runs/{run_id:str}/move",
    status_code=200,
    summary="Move a run to another build",
    description=(
        "From now on the run continues only on workers of `build_id` (the way off a build that "
        "is gone for a pinned run). 409 unknown_build: no worker registered the run's function "
        "with that build (`GET /v1/builds` lists them). 409 run_finished: the run has ended."
    ),
    tags=["runs"],
    responses=_errors(400, 404, 409),
    request_class=JsonRequest,
)
async def move_run(
    gateway: NamedDependency[Gateway], run_id: RunId, data: JSONBody[MoveBody]
) -> RunOut:
    run = await gateway.backend.move_run(MoveRunRequest(run_id=run_id, build_id=data.build_id))
    return run_out(run)


@post(
    "/v1/runs/{run_id:str}/cancel",
    status_code=200,
    summary="Cancel a run",
    description=(
        "200: the run is cancelled. 202: the cancellation is requested (`cancel_requested`): "
        "the workflow is told and may clean up; the run ends as cancelled, at the latest at "
        "`cancel_deadline`. With ?wait, the answer comes once the run is final (or the wait "
        "runs out: 202). 409 run_finished: the run had already ended."
    ),
    tags=["runs"],
    responses={
        202: ResponseSpec(RunOut, generate_examples=False, description="cancelling, not final"),
        **_errors(400, 404, 409),
    },
    request_class=JsonRequest,
)
async def cancel_run(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    data: JSONBody[CancelBody | None] = None,
    wait: WaitSeconds = None,
) -> Response[RunOut]:
    reason = data.reason if data is not None else ""
    run = await gateway.backend.cancel_run(CancelRunRequest(run_id=run_id, reason=reason))
    if wait is not None:
        run = await gateway.wait(run, wait)
    return Response(run_out(run), status_code=200 if is_final(run.status) else 202)


@post(
    "/v1/runs/{run_id:str}/signals/{name:str}",
    status_code=202,
    summary="Send a signal to a run",
    response_description="the signal is recorded: delivered to the waiting run, or kept",
    description=(
        "The body, any JSON document (empty: null), is the signal's payload. A run waiting for "
        "a signal of this name resumes with it (`delivered`: true); otherwise the signal is kept "
        "until the run waits for one of this name (`delivered`: false). Signal names are 1 to "
        f"{MAX_SIGNAL_NAME} characters of letters, digits and `_ . : -`. "
        "409 run_finished: the run has already ended. 409 kept_signals_full: no wait takes it and "
        "the run already keeps as many signals (or bytes of them) as `[engine] max_kept_signals` "
        "(`max_kept_signal_bytes`) allow; `details.limit` names the setting, `details.kept` and "
        "`details.kept_bytes` what it keeps (the run's `kept_signals`)."
    ),
    tags=["runs"],
    responses=_errors(400, 404, 409, 413),
    request_class=JsonRequest,
)
async def signal_run(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    name: Annotated[
        str,
        PathParameter(
            description=f"the signal's name: 1 to {MAX_SIGNAL_NAME} of letters, digits, _ . : -",
            schema_extra={"pattern": f"^{SIGNAL_NAME.pattern}$", "maxLength": MAX_SIGNAL_NAME},
        ),
    ],
    data: Annotated[
        Any, Body(description="the signal's payload: any JSON document (empty body: null)")
    ] = None,
) -> Response[SignalOut]:
    check_signal_name(name)
    answer = await gateway.backend.signal_run(
        SignalRunRequest(run_id=run_id, name=name, payload=encode_input(data))
    )
    if answer.run is None:
        raise TrineError("the backend took a signal but did not answer the run")
    body = SignalOut(
        run_id=answer.run.id, signal=name, delivered=answer.delivered, run=run_out(answer.run)
    )
    return Response(body, status_code=202)


@get(
    "/v1/runs/{run_id:str}/events",
    summary="A run's events as server-sent events, live until its final event",
    description=(
        "Each event: `id: <seq>`, `event: <type>`, `data: {seq, type, name, data, at}`. "
        "Resume with the Last-Event-ID header (or ?after=N): events with a greater seq follow. "
        "410 run_expired: retention deleted the run (and its events) since it ended."
    ),
    tags=["runs"],
    media_type="text/event-stream",
    responses={
        200: ResponseSpec(
            EventMessageOut,
            generate_examples=False,
            media_type="text/event-stream",
            description="the run's events, one SSE message each, until its final event",
        ),
        **_errors(400, 404, 410),
    },
)
async def run_events(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    after: Annotated[
        int | None,
        QueryParameter(
            ge=0,
            le=MAX_SEQ,
            description="resume after this seq",
            schema_extra={"minimum": 0, "maximum": MAX_SEQ},
        ),
    ] = None,
    last_event_id: Annotated[
        int | None,
        HeaderParameter(
            name="Last-Event-ID",
            ge=0,
            le=MAX_SEQ,
            description="wins over ?after",
            schema_extra={"minimum": 0, "maximum": MAX_SEQ},
        ),
    ] = None,
) -> EventStream:
    return await gateway.event_stream(run_id, after, last_event_id)


@get("/v1/functions", summary="Every function a worker registered", tags=["functions"])
async def list_functions(gateway: NamedDependency[Gateway]) -> FunctionListOut:
    answer = await gateway.backend.list_functions(ListFunctionsRequest())
    return FunctionListOut(functions=[function_out(spec) for spec in answer.functions])


@get(
    "/v1/builds",
    summary="Every build the engine knows of",
    description=(
        "Each build a worker registered with, by `build_id`: the functions its workers "
        "registered, `open_runs` (runs not final that started on it), `connected` (a worker of "
        "it asked for work within the last 10 s) and `last_seen`."
    ),
    tags=["builds"],
)
async def list_builds(gateway: NamedDependency[Gateway]) -> BuildListOut:
    answer = await gateway.backend.list_builds(ListBuildsRequest())
    return BuildListOut(builds=[build_out(build) for build in answer.builds])


@get(
    "/v1/workers",
    summary="The workers connected to the coordinators",
    description=(
        "Every worker process of every coordinator wired to this gateway: its functions, "
        "capacity (`max_concurrency`, `in_flight`, `free_slots`), runs in flight (oldest first, "
        "at most `max_runs` per worker), connection and last heartbeat, whether it drains, and "
        "its coordinator. A coordinator that does not answer is listed in `unavailable`. "
        "503 unavailable: no coordinator answered, or none is wired to this gateway."
    ),
    tags=["workers"],
    responses=_errors(400, 503),
)
async def list_workers(
    gateway: NamedDependency[Gateway],
    max_runs: Annotated[
        int, QueryParameter(ge=0, le=1000, description="runs in flight listed per worker")
    ] = DEFAULT_MAX_RUNS,
) -> WorkerListOut:
    return await gateway.workers(max_runs)


@get(
    "/healthz",
    summary="200 when every role of this process is ready and the engine answers, else 503",
    tags=["health"],
    responses={503: ResponseSpec(HealthOut, generate_examples=False, description="not ready")},
)
async def healthz(gateway: NamedDependency[Gateway]) -> Response[HealthOut]:
    try:
        ready = gateway.ready()
    except Exception as exc:
        log.warning("readiness check failed", exc_info=exc)
        ready = False
    if not ready or gateway.lifecycle.closing:
        return Response(HealthOut(status="unavailable"), status_code=503)
    try:
        # The engine may live in another process: ready means it answers, not just that we run.
        await gateway.backend.list_functions(ListFunctionsRequest())
    except TrineError as exc:
        return Response(HealthOut(status="unavailable", reason=exc.message), status_code=503)
    return Response(HealthOut(status="ok"), status_code=200)


def check_idempotency_key(key: str) -> None:
    """Refuse an Idempotency-Key that breaks :data:`IDEMPOTENCY_KEY`, naming the rule."""
    if IDEMPOTENCY_KEY.fullmatch(key) is None:
        problem = (
            f"{len(key)} characters"
            if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
            else "a character outside printable ASCII"
        )
        raise InvalidArgument(
            f"Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters "
            f"(0x20-0x7e); this one has {problem}",
            header="Idempotency-Key",
        )


@route(
    "/v1/runs",
    http_method=["OPTIONS"],
    include_in_schema=False,
    status_code=204,
    sync_to_thread=False,
)
def runs_options() -> Response[None]:
    """``/v1/runs`` has two handlers, and litestar's own OPTIONS answer lists only the first's
    method: this one lists both."""
    return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})


HANDLERS: list[Any] = [
    runs_options,
    start_run,
    list_runs,
    read_run,
    read_journal,
    read_history,
    retry_run,
    move_run,
    cancel_run,
    signal_run,
    run_events,
    list_functions,
    list_builds,
    list_workers,
    healthz,
]
