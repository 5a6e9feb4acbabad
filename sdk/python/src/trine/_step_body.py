"""Where a step's function runs: an async one as its own task on the loop, a sync one in a thread.

Everything in a worker shares one event loop (heartbeats, reports, every run in flight), so a
sync function, which may block for as long as it likes (``requests``, a sync LLM client,
``time.sleep``), is never called on it: it runs in the worker's pool of step threads
(``Worker(step_threads=...)``). What a thread cannot do is be interrupted, which decides what a
timeout and a cancellation mean for a sync step (docs/workflows.md, "Sync or async steps"):

- past its ``timeout`` the attempt still waits for the function, then fails with
  ``TimeoutError`` whatever it returned or raised (the result is discarded): failing at once would
  let the retry run while the first execution is still going, two executions of one step at once;
- a cancellation notice leaves it running; its result is journaled as usual, and the workflow
  hears of the cancellation at its next ``ctx`` call (the side effect happened: the clean-up code
  should know it).

An async function's awaitable runs as its own task, so a timeout or a cancellation notice can stop
it without stopping the workflow. A sync callable that returns an awaitable (``lambda: fetch(u)``)
is a call-through to async code: what it returns is awaited the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _lag
from ._attempt import Attempt
from .errors import CancelledError


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives an awaitable to await (an ``async def``, also behind
    ``functools.partial`` or as an object's ``async def __call__``), so it runs on the loop."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - the method itself, not callability
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


async def run(
    attempt: Attempt,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    limit: float | None,
    *,
    inline: bool = False,
) -> Any:
    """Run ``fn(*args)`` where it belongs and return what it returned (or raise what it raised).

    ``inline``: call it right here, on the loop (only for the SDK's own microsecond bodies)."""
    if inline:
        return fn(*args)
    if is_async(fn):
        return await _on_loop(attempt, fn(*args), name, limit)
    started = time.monotonic()
    value = await _in_thread(attempt, fn, args, name, limit)
    if inspect.isawaitable(value):
        # A sync callable that calls async code (a lambda, a decorator not marked async) gave
        # back its awaitable: await it on the loop, as an async step, in what is left of the limit.
        left = None if limit is None else max(limit - (time.monotonic() - started), 0.0)
        return await _on_loop(attempt, value, name, left)
    return value


async def _on_loop(
    attempt: Attempt, awaitable: Awaitable[Any], name: str, limit: float | None
) -> Any:
    """Await an async step's work as its own task, so a timeout or a cancellation notice
    can stop it without stopping the workflow."""
    task = asyncio.ensure_future(awaitable)
    attempt.inner.add(task)
    _lag.label(task, f"step {name!r} of workflow {attempt.function!r} (run {attempt.run_id})")
    try:
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        except BaseException:
            task.cancel()  # the worker is stopping: the step stops with it
            raise
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise TimeoutError(f"step {name!r} did not finish within {limit:g}s")
        if task.cancelled() and task in attempt.interrupted:
            raise CancelledError(f"run {attempt.run_id} was cancelled during step {name!r}")
        return task.result()
    finally:
        _lag.unlabel(task)
        attempt.inner.discard(task)
        attempt.interrupted.discard(task)


async def _in_thread(
    attempt: Attempt, fn: Callable[..., Any], args: tuple[Any, ...], name: str, limit: float | None
) -> Any:
    """Run a sync step in a step thread (with the caller's context variables, as
    ``asyncio.to_thread`` does) and wait for it, however long it takes (see the module's doc)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    started = time.monotonic()
    future = loop.run_in_executor(attempt.executor, call)
    attempt.threaded.append(name)
    try:
        if limit is not None:
            done, _ = await asyncio.wait({future}, timeout=limit)
            if not done:
                attempt.log.warning(
                    "step %r is past its timeout of %gs; it is sync and runs in a thread, which "
                    "cannot be interrupted: it fails with TimeoutError once it returns",
                    name,
                    limit,
                )
        try:
            value = await future
        except Exception as exc:
            _raise_if_late(name, started, limit, exc)
            raise
        _raise_if_late(name, started, limit, None)
        return value
    finally:
        attempt.threaded.remove(name)


def _raise_if_late(
    name: str, started: float, limit: float | None, error: BaseException | None
) -> None:
    elapsed = time.monotonic() - started
    if limit is not None and elapsed > limit:
        raise TimeoutError(
            f"step {name!r} ran {elapsed:.1f}s, past its timeout of {limit:g}s (a sync step "
            "cannot be interrupted: it ran to its end and its outcome was discarded)"
        ) from error
