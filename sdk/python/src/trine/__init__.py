"""trine: durable functions for Python. The worker SDK and the HTTP client.

A worker serves workflow functions; each step a workflow takes through ``ctx.step`` is journaled
by the runtime, so a run survives the crash of any process and never repeats a step whose result
was recorded::

    import trine

    worker = trine.Worker()

    @worker.function(retry=trine.RetryPolicy(max_attempts=5))
    async def order(ctx: trine.Context, order: dict) -> dict:
        receipt = await ctx.step("charge", charge, order)
        return {"receipt": receipt}

    worker.run()

``trine.Client`` starts runs, awaits their results and follows their events (``trine.Event``)
over HTTP.

Changing a workflow under runs in flight (docs/versioning.md): guard new code with
``if ctx.patched("change-id"):``, name the code a worker serves with ``Worker(build_id=...)``,
choose per function ``versioning`` and ``on_workflow_error``, and check a change against
exported run histories with ``trine.testing.replay(worker, history)`` before deploying it.
"""

from __future__ import annotations

from ._events import Event
from ._version import __version__
from .client import Client
from .context import Context
from .converter import Converter, PydanticConverter
from .errors import (
    CancelledError,
    ChildRunError,
    ClientError,
    ConversionError,
    NonDeterminismError,
    NonRetryableError,
    RunFailedError,
    SignalTimeout,
    StepError,
    TrineError,
)
from .retry import RetryPolicy
from .worker import Worker

__all__ = [
    "CancelledError",
    "ChildRunError",
    "Client",
    "ClientError",
    "Context",
    "ConversionError",
    "Converter",
    "Event",
    "NonDeterminismError",
    "NonRetryableError",
    "PydanticConverter",
    "RetryPolicy",
    "RunFailedError",
    "SignalTimeout",
    "StepError",
    "TrineError",
    "Worker",
    "__version__",
]
