"""OpenTelemetry spans of the worker: one per dispatch attempt, one per step attempt under it.

Only the OpenTelemetry *API* is used, with the process's global tracer provider: a worker whose
program sets up ``opentelemetry-sdk`` (or runs under ``opentelemetry-instrument``) exports them,
beside its own spans, which nest under the step that is running (a step's body runs in the step
span's context, sync steps included). With no provider set, nothing is created at all: one
``isinstance`` per attempt and per step (see :func:`enabled`).

The attempt span's parent is the dispatch's context (``WorkItem.trace_context``, the
coordinator's span) or else the run's (``Run.trace_context``, stored by the engine when the run
started, from the caller's ``traceparent``): every attempt of a run, a replay after a crash
included, joins the run's one trace. A replayed step gets no span (it does not run); waits are
events on the attempt span, and a child run started here joins the trace under this attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode

from ._version import __version__

TRACER_NAME = "trine.worker"
_tracer = trace.get_tracer(TRACER_NAME, __version__)


# The API's get_tracer_provider() reads os.environ on every call while none is set (2-3 µs):
# the provider the API holds once one is set is read directly when this API version has it
# (it has, since 1.0). Asking once here loads one that OTEL_PYTHON_TRACER_PROVIDER names.
trace.get_tracer_provider()
_DIRECT = hasattr(trace, "_TRACER_PROVIDER")


def enabled() -> bool:
    """True once a tracer provider is installed (the API's default proxy records nothing): only
    then are spans made. A few dozen nanoseconds."""
    if _DIRECT:
        return trace._TRACER_PROVIDER is not None
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


_follows_parent: tuple[object, bool] = (None, False)


def dropped(carrier: Mapping[str, str]) -> bool:
    """True when no span under ``carrier`` would record: its trace was not sampled and the
    provider's sampler follows the parent's decision (``parentbased_*``, the default); such an
    attempt gets no span, nor do its steps."""
    global _follows_parent
    traceparent = carrier.get("traceparent", "") if carrier else ""
    if len(traceparent) < 2 or traceparent[-1] not in "02468ace":
        return False
    provider = trace.get_tracer_provider()
    if _follows_parent[0] is not provider:
        sampler = getattr(provider, "sampler", None)
        description = sampler.get_description() if sampler is not None else ""
        _follows_parent = (provider, description.startswith("ParentBased"))
    return _follows_parent[1]


@contextmanager
def attempt_span(
    run_id: str,
    function: str,
    attempt: int,
    carrier: Mapping[str, str],
) -> Iterator[Span | None]:
    """The span of one dispatch attempt of a run, current while its workflow runs (None, and
    nothing current, without a tracer provider or when it would not record)."""
    if not enabled() or dropped(carrier):
        yield None
        return
    parent = propagate.extract(carrier) if carrier else None
    with _tracer.start_as_current_span(
        f"trine.attempt {function}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "trine.run_id": run_id,
            "trine.function": function,
            "trine.attempt": attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


@contextmanager
def step_span(
    run_id: str, function: str, name: str, index: int, attempt: int
) -> Iterator[Span | None]:
    """The span of one executed attempt of a step (not of a replayed one), under the attempt's:
    none when the attempt has none (its trace is not sampled)."""
    if not enabled() or not trace.get_current_span().get_span_context().is_valid:
        yield None
        return
    with _tracer.start_as_current_span(
        f"trine.step {name}",
        attributes={
            "trine.run_id": run_id,
            "trine.function": function,
            "trine.step.name": name,
            "trine.step.index": index,
            "trine.step.attempt": attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def outcome(span: Span | None, value: str, error: BaseException | str | None = None) -> None:
    """Record how an attempt or a step ended (``trine.outcome``); an error marks the span."""
    if span is None:
        return
    span.set_attribute("trine.outcome", value)
    if error is None:
        return
    if isinstance(error, BaseException):
        span.record_exception(error)
        error = f"{type(error).__name__}: {error}"
    span.set_status(Status(StatusCode.ERROR, error))


def wait_event(kind: str, name: str, index: int) -> None:
    """A wait the workflow asked for (sleep, signal, child), as an event on the current span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(f"trine.{kind}", {"trine.wait.name": name, "trine.wait.index": index})


def current_context() -> dict[str, str]:
    """The current span's context as a W3C carrier (a child run's parent); empty without one."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
