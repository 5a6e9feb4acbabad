"""The console's pages and forms, under ``/ui``. Each handler calls the ``Backend`` as the JSON
API's handlers do and renders a template of :mod:`trine_gateway.ui` (Jinja2).

Forms post to ``/ui/...`` (``application/x-www-form-urlencoded``): a success answers 303 to the
run's page; a failure renders the form again, with the API's error code and message next to the
field it is about and the status the JSON API would answer. A cross-site post (a browser's
``Origin`` or ``Sec-Fetch-Site`` says so) is refused with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Annotated, Any

from litestar import MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Redirect, Template

from trine_core import TrineError, check_signal_name, get_logger
from trine_gateway.errors import http_status
from trine_gateway.models import MAX_TIMEOUT_S
from trine_gateway.routes import MAX_SEQ, Gateway
from trine_gateway.serialization import STATUS_BY_NAME, encode_input
from trine_gateway.sse import EventStream
from trine_gateway.ui.views import (
    STATUSES,
    FunctionCounts,
    count_by_function,
    run_view,
    timeline,
)
from trine_proto.trine.v1 import (
    CancelRunRequest,
    Event,
    GetJournalRequest,
    GetRunRequest,
    ListBuildsRequest,
    ListFunctionsRequest,
    ListRunsRequest,
    ListRunsResponse,
    RetryRunRequest,
    Run,
    RunStatus,
    SignalRunRequest,
    StartRunRequest,
    SubscribeRequest,
)
from trine_proto.vocabulary import FINAL_EVENT_TYPES, STREAM_ERROR_EVENT, ErrorCode, EventType

log = get_logger("gateway")

PAGE_SIZES = (20, 50, 100, 200)
MAX_TIMELINE_EVENTS = 2000
"""A run page reads at most this many of the run's latest events (its attempts and waits)."""
EVENTS_READ_TIMEOUT_S = 5.0
MAX_WORKER_RUNS = 20
"""The workers page lists at most this many runs in flight per worker."""
COUNTED_RUNS = 10_000
"""The functions page counts the statuses of at most this many runs, the newest."""
SINCE = {"15m": 15 * 60, "1h": 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
NOTICES = {
    "started": "Run started.",
    "cancelled": "Run cancelled.",
    "cancel_requested": "Cancellation requested: the workflow is told and may clean up first.",
    "delivered": "Signal delivered: the run was waiting for it.",
    "kept": "Signal kept: the run takes it when it waits for a signal of that name.",
    "retried": "Run retried: it resumes from its journal, the failed step runs again.",
}
VERSIONING_EVENT_TYPES = ("run.blocked", "run.retried", "run.moved")
"""The events of docs/versioning.md a run's page follows too (its status changes with them)."""
EVENT_TYPES = list(dict.fromkeys([*(t.value for t in EventType), *VERSIONING_EVENT_TYPES]))
FINAL_TYPES = sorted(FINAL_EVENT_TYPES)

RunId = FromPath[str]
Query = Annotated[str | None, QueryParameter()]


class FormError(Exception):
    """A form's input is wrong: shown next to ``field`` as ``code: message``."""

    def __init__(self, field: str, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.code, self.message, self.status = field, code, message, status

    @classmethod
    def of(cls, field: str, exc: TrineError) -> FormError:
        return cls(field, exc.code, exc.message, http_status(exc))


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard of every form post: a browser says where a post comes from (``Sec-Fetch-Site``,
    ``Origin``); one from another site is refused. Clients that send neither (curl) pass."""
    site = connection.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedException("a form of the console was posted from another site")
    origin = connection.headers.get("origin")
    if origin == "null" and site != "same-origin":
        # an opaque origin: a sandboxed frame, a data: page, a post redirected across sites
        raise PermissionDeniedException("a console form was posted from an opaque origin (null)")
    if origin is not None and origin != "null":
        # Behind a proxy the browser's host may be the proxy's, which it passes on as
        # X-Forwarded-Host. (A page of another site cannot set that header on a form post.)
        hosts = {connection.headers.get("host", ""), connection.headers.get("x-forwarded-host")}
        if origin.split("://", 1)[-1] not in hosts:
            raise PermissionDeniedException(f"a console form was posted from {origin}")


def _page(template: str, status: int = 200, **context: Any) -> Template:
    return Template(template_name=template, context=context, status_code=status)


# -- runs ----------------------------------------------------------------------------------------


def _parse_time(value: str | None, field: str, problems: list[str]) -> int:
    """A ``datetime-local`` value (UTC) as milliseconds since the epoch; 0 when empty."""
    if not value:
        return 0
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{field}: {value!r} is not a date and time (YYYY-MM-DDTHH:MM)")
        return 0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return max(0, int(parsed.timestamp() * 1000))


@get("/", name="ui:home")
async def home() -> Redirect:
    return Redirect("/ui/runs")


@get("/runs", name="ui:runs")
async def runs_page(
    gateway: NamedDependency[Gateway],
    status: Query = None,
    function: Query = None,
    since: Query = None,
    created_from: Annotated[str | None, QueryParameter(name="from")] = None,
    created_to: Annotated[str | None, QueryParameter(name="to")] = None,
    page: Query = None,
    limit: Query = None,
) -> Template:
    problems: list[str] = []
    run_status = RunStatus.UNSPECIFIED
    if status:
        if status in STATUS_BY_NAME:
            run_status = STATUS_BY_NAME[status]
        else:
            problems.append(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    size = int(limit) if limit and limit.isdigit() and int(limit) in PAGE_SIZES else 50
    after_ms = _parse_time(created_from, "from", problems)
    before_ms = _parse_time(created_to, "to", problems)
    if since in SINCE:
        after_ms = max(after_ms, int(time.time() * 1000) - SINCE[since] * 1000)
    elif since:
        problems.append(f"since: {since!r} is not one of {', '.join(SINCE)}")
    answer = await gateway.backend.list_runs(
        ListRunsRequest(
            status=run_status,
            function=function or "",
            limit=size,
            page_token=page or "",
            newest_first=True,
            created_after_ms=after_ms,
            created_before_ms=before_ms,
        )
    )
    functions = await gateway.backend.list_functions(ListFunctionsRequest())
    filters = {
        "status": status or "",
        "function": function or "",
        "since": since or "",
        "from": created_from or "",
        "to": created_to or "",
        "limit": str(size) if size != 50 else "",
    }
    return _page(
        "runs.html",
        runs=[run_view(run) for run in answer.runs],
        filters=filters,
        query={k: v for k, v in filters.items() if v},
        next_page=answer.next_page_token,
        first_page=bool(page),
        problems=problems,
        statuses=STATUSES,
        since_choices=list(SINCE),
        page_sizes=PAGE_SIZES,
        functions=[spec.name for spec in functions.functions],
    )


# -- one run -------------------------------------------------------------------------------------


async def _events(gateway: Gateway, run: Run) -> list[Event]:
    """The run's events up to its ``last_event_seq`` (its latest ``MAX_TIMELINE_EVENTS``)."""
    last = run.last_event_seq
    if last == 0:
        return []
    after = max(0, last - MAX_TIMELINE_EVENTS)
    events: list[Event] = []
    subscription = gateway.backend.subscribe(SubscribeRequest(run_id=run.id, after_seq=after))
    try:
        async with asyncio.timeout(EVENTS_READ_TIMEOUT_S):
            async for event in subscription:
                events.append(event)
                if event.seq >= last:
                    break
    except TimeoutError:
        log.warning(
            "reading a run's events timed out",
            run_id=run.id,
            function=run.function,
            read=len(events),
        )
    except TrineError as exc:
        log.warning(
            "reading a run's events failed",
            run_id=run.id,
            function=run.function,
            error=exc.message,
        )
    finally:
        aclose = getattr(subscription, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return events


async def _run_context(gateway: Gateway, run_id: str) -> dict[str, Any]:
    run = await gateway.backend.get_run(GetRunRequest(run_id=run_id))
    journal = await gateway.backend.get_journal(GetJournalRequest(run_id=run_id))
    events = await _events(gateway, run)
    view = run_view(run)
    line = timeline(journal.entries, events)
    children = [item for item in line.items if item.kind == "child" and item.child_run_id]
    return {
        "run": view,
        "timeline": line,
        "children": children,
        "event_types": json.dumps(EVENT_TYPES),
        "final_types": json.dumps(FINAL_TYPES),
        "stream_error": STREAM_ERROR_EVENT,
    }


@get("/runs/{run_id:str}", name="ui:run")
async def run_page(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    notice: Query = None,
) -> Template:
    context = await _run_context(gateway, run_id)
    return _page(
        "run.html",
        notice=NOTICES.get(notice or ""),
        errors={},
        form={},
        **context,
    )


@get("/runs/{run_id:str}/live", name="ui:run-live")
async def run_live(gateway: NamedDependency[Gateway], run_id: RunId) -> Template:
    """The part of the run page that changes, for the page's script to swap in."""
    return _page("_run_live.html", errors={}, form={}, **await _run_context(gateway, run_id))


@get("/runs/{run_id:str}/events", name="ui:run-events", media_type="text/event-stream")
async def run_events(
    gateway: NamedDependency[Gateway],
    run_id: RunId,
    after: Annotated[int | None, QueryParameter(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[
        int | None, HeaderParameter(name="Last-Event-ID", ge=0, le=MAX_SEQ)
    ] = None,
) -> EventStream:
    """The run's event stream, as ``GET /v1/runs/{id}/events`` gives it, for the page's script:
    under ``/ui`` the browser sends the console's cookie (``Path=/ui``), so a signed-in page
    follows its run without holding the token itself."""
    return await gateway.event_stream(run_id, after, last_event_id)


async def _run_form_error(
    gateway: Gateway,
    run_id: str,
    error: FormError,
    form: Mapping[str, str],
) -> Template:
    context = await _run_context(gateway, run_id)
    errors = {error.field: f"{error.code}: {error.message}"}
    return _page("run.html", status=error.status, notice=None, errors=errors, form=form, **context)


@post("/runs/{run_id:str}/cancel", name="ui:cancel", guards=[same_origin], status_code=303)
async def cancel_form(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway], run_id: RunId
) -> Response[Any]:
    form = await request.form()
    reason = str(form.get("reason") or "")
    try:
        run = await gateway.backend.cancel_run(CancelRunRequest(run_id=run_id, reason=reason))
    except TrineError as exc:
        if exc.code == ErrorCode.RUN_NOT_FOUND:
            raise
        failed = FormError.of("cancel", exc)
        return await _run_form_error(gateway, run_id, failed, {"reason": reason})
    notice = "cancelled" if run.status == RunStatus.CANCELLED else "cancel_requested"
    return Redirect(f"/ui/runs/{run_id}", query_params={"notice": notice}, status_code=303)


@post("/runs/{run_id:str}/retry", name="ui:retry", guards=[same_origin], status_code=303)
async def retry_form(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway], run_id: RunId
) -> Response[Any]:
    """A failed or blocked run resumes from its journal (``POST /v1/runs/{id}/retry``)."""
    form = await request.form()
    reason = str(form.get("reason") or "")
    try:
        await gateway.backend.retry_run(RetryRunRequest(run_id=run_id, reason=reason))
    except TrineError as exc:
        if exc.code == ErrorCode.RUN_NOT_FOUND:
            raise
        failed = FormError.of("retry", exc)
        return await _run_form_error(gateway, run_id, failed, {"retry_reason": reason})
    return Redirect(f"/ui/runs/{run_id}", query_params={"notice": "retried"}, status_code=303)


@post("/runs/{run_id:str}/signal", name="ui:signal", guards=[same_origin], status_code=303)
async def signal_form(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway], run_id: RunId
) -> Response[Any]:
    form = await request.form()
    name, payload = str(form.get("name") or "").strip(), str(form.get("payload") or "")
    values = {"name": name, "payload": payload}
    try:
        try:
            check_signal_name(name)
        except TrineError as exc:
            raise FormError.of("name", exc) from exc
        data = _json_field("payload", payload)
        try:
            answer = await gateway.backend.signal_run(
                SignalRunRequest(run_id=run_id, name=name, payload=encode_input(data))
            )
        except TrineError as exc:
            if exc.code == ErrorCode.RUN_NOT_FOUND:
                raise
            field = "payload" if exc.code == ErrorCode.PAYLOAD_TOO_LARGE else "signal"
            raise FormError.of(field, exc) from exc
    except FormError as failed:
        return await _run_form_error(gateway, run_id, failed, values)
    notice = "delivered" if answer.delivered else "kept"
    return Redirect(f"/ui/runs/{run_id}", query_params={"notice": notice}, status_code=303)


def _json_field(field: str, text: str) -> Any:
    """A form field's JSON (empty: ``null``), or a :class:`FormError` as the API's
    ``malformed_json``."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FormError(field, "malformed_json", f"{field} is not valid JSON: {exc}") from exc


# -- starting a run ------------------------------------------------------------------------------


async def _start_page(
    gateway: Gateway,
    form: Mapping[str, str],
    errors: Mapping[str, str],
    status: int = 200,
) -> Template:
    functions = await gateway.backend.list_functions(ListFunctionsRequest())
    return _page(
        "start.html",
        status=status,
        form=form,
        errors=errors,
        functions=[spec.name for spec in functions.functions],
    )


@get("/start", name="ui:start")
async def start_page(gateway: NamedDependency[Gateway], function: Query = None) -> Template:
    return await _start_page(gateway, {"function": function or "", "input": ""}, {})


@post("/runs", name="ui:start-run", guards=[same_origin], status_code=303)
async def start_form(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]
) -> Response[Any]:
    form = await request.form()
    values = {key: str(form.get(key) or "") for key in ("function", "input", "timeout_s", "key")}
    function = values["function"].strip()
    try:
        if not function:
            raise FormError("function", "invalid_request", "function: a function name is needed")
        data = _json_field("input", values["input"])
        timeout_ms = _timeout_ms(values["timeout_s"])
        try:
            started = await gateway.backend.start_run(
                StartRunRequest(
                    function=function,
                    input=encode_input(data),
                    idempotency_key=values["key"].strip(),
                    timeout_ms=timeout_ms,
                )
            )
        except TrineError as exc:
            fields: dict[str, str] = {
                ErrorCode.UNKNOWN_FUNCTION: "function",
                ErrorCode.PAYLOAD_TOO_LARGE: "input",
            }
            field = fields.get(exc.code, "form")
            raise FormError.of(field, exc) from exc
    except FormError as failed:
        errors = {failed.field: f"{failed.code}: {failed.message}"}
        return await _start_page(gateway, values, errors, failed.status)
    if started.run is None:
        raise TrineError("the backend started a run but did not answer it")
    notice = "started" if started.created else ""
    return Redirect(f"/ui/runs/{started.run.id}", query_params={"notice": notice}, status_code=303)


def _timeout_ms(text: str) -> int:
    if not text.strip():
        return 0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT_S:
        message = f"timeout_s: {text!r} is not a number of seconds more than 0"
        raise FormError("timeout_s", "invalid_request", message)
    return max(1, round(seconds * 1000))


# -- functions and workers -----------------------------------------------------------------------


async def _latest_runs(gateway: Gateway) -> tuple[list[Run], bool]:
    """The newest :data:`COUNTED_RUNS` runs, and whether there are more."""
    runs: list[Run] = []
    token = ""
    while len(runs) < COUNTED_RUNS:
        page: ListRunsResponse = await gateway.backend.list_runs(
            ListRunsRequest(limit=1000, page_token=token, newest_first=True)
        )
        runs += page.runs
        token = page.next_page_token
        if not token:
            return runs, False
    return runs[:COUNTED_RUNS], True


@get("/functions", name="ui:functions")
async def functions_page(gateway: NamedDependency[Gateway]) -> Template:
    functions = await gateway.backend.list_functions(ListFunctionsRequest())
    runs, more = await _latest_runs(gateway)
    counts = count_by_function([spec.name for spec in functions.functions], runs)
    retry = {
        spec.name: (
            f"{spec.retry.max_attempts or 'default'} attempts, "
            f"{spec.retry.initial_interval_ms} ms, times {spec.retry.backoff_coefficient:.3g}"
            f" up to {spec.retry.max_interval_ms} ms"
            if spec.retry is not None
            else "default"
        )
        for spec in functions.functions
    }
    rows = [
        FunctionCounts(name, retry.get(name, "(not registered)"), row)
        for name, row in counts.items()
    ]
    return _page(
        "functions.html",
        rows=rows,
        statuses=STATUSES,
        counted=len(runs),
        more=more,
        limit=COUNTED_RUNS,
    )


@get("/workers", name="ui:workers")
async def workers_page(gateway: NamedDependency[Gateway]) -> Template:
    """Through the same accessor as ``GET /v1/workers``: every coordinator wired to the gateway."""
    try:
        listed = await gateway.workers(MAX_WORKER_RUNS)
    except TrineError as exc:
        return _page("workers.html", workers=None, unavailable=[], reason=exc.message)
    return _page(
        "workers.html",
        workers=listed.workers,
        unavailable=listed.unavailable,
        reason="",
        several=len({worker.coordinator for worker in listed.workers}) > 1,
        max_runs=MAX_WORKER_RUNS,
    )


@get("/builds", name="ui:builds")
async def builds_page(gateway: NamedDependency[Gateway]) -> Template:
    """The builds the engine knows from registrations: their functions, open runs, and whether
    a worker of each asks for work now (``GET /v1/builds``)."""
    answer = await gateway.backend.list_builds(ListBuildsRequest())
    return _page("builds.html", builds=answer.builds)


# -- errors --------------------------------------------------------------------------------------


def html_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An error page for the console's routes (the JSON API keeps its JSON errors)."""
    if isinstance(exc, TrineError):
        status, code, message = http_status(exc), exc.code, exc.message
    elif isinstance(exc, HTTPException):
        status, code, message = exc.status_code, "error", str(exc.detail)
    else:
        log.error("console request failed", path=request.url.path, exc_info=exc)
        status, code, message = 500, ErrorCode.INTERNAL, "internal error"
    engine = request.app.template_engine
    assert engine is not None
    body = engine.get_template("error.html").render(
        status=status, code=code, message=message, request=request
    )
    return Response(body, status_code=status, media_type=MediaType.HTML)


HANDLERS: list[Any] = [
    home,
    runs_page,
    run_page,
    run_live,
    run_events,
    cancel_form,
    retry_form,
    signal_form,
    start_page,
    start_form,
    functions_page,
    workers_page,
    builds_page,
]
