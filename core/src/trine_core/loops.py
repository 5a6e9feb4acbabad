"""A role on an event loop of its own (``own_loop``), and the calls that cross loops.

Every role of a process shares one event loop, and asyncio runs what is ready in arrival order:
a gateway flooded with requests holds the loop for a quarter of a second at a time, and the
heartbeats, dispatches and commits queued behind it wait that long
(``trine_event_loop_lag_seconds``; ``bench/storm.py``). A role listed in ``own_loop`` runs on a
thread of its own with its own loop instead; the interpreter hands the GIL between the threads
every switch interval (the engine lowers it, to 0.1 ms since the figures of docs/performance.md
were taken at 0.5 ms), so a flood on one loop delays the other by about that, not by a whole
turn of the busy loop. It is not the default: every call between the loops wakes the other
thread, which costs CPU and latency when nothing floods (docs/performance.md, "Roles under a
flood").

Such a role's needs and wants are the same objects as before, behind :func:`across`: each call
runs on the loop that owns the object (where its futures, sockets and state live) and its answer
comes back to the caller's loop. Context variables (the trace, the log context) travel with the
call (``call_soon_threadsafe`` runs its callback in a copy of the caller's context), and
cancelling the caller cancels the call. Only roles that serve no contract may have their own
loop: what they serve would be called from the other loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from trine_core.hookspecs import ASGIApp

T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it comes with the gateway's uvicorn[standard]):
    the runtime spends a good part of its time in the event loop itself."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def on_loop(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on ``loop`` and await its outcome here (directly when ``loop`` is this
    one). Cancelling the caller cancels ``work``."""
    if loop is asyncio.get_running_loop():
        return await work
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))


_END = object()


async def _next(iterator: AsyncIterator[T]) -> object:
    try:
        return await anext(iterator)
    except StopAsyncIteration:  # not raised through a future: a sentinel says the end
        return _END


async def iterate_on(
    loop: asyncio.AbstractEventLoop, iterator: AsyncIterator[T]
) -> AsyncIterator[T]:
    """``iterator``'s items, each taken on ``loop`` (where it was made) and yielded here;
    closed on ``loop`` when this generator is."""
    try:
        while True:
            item = await on_loop(loop, _next(iterator))
            if item is _END:
                return
            yield cast(T, item)
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None and not loop.is_closed():
            # The caller is leaving: a failure to close is nothing it could act on.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await on_loop(loop, close())


def across(contract: type[T], implementation: T, loop: asyncio.AbstractEventLoop) -> T:
    """``implementation`` of ``contract``, for callers on another loop: each ``async``
    method runs on ``loop``; a method returning an async iterator is called and iterated on
    ``loop``, and an async iterator it is given is iterated on the caller's loop."""
    methods: dict[str, Callable[..., Any]] = {}
    for name, declared in inspect.getmembers(contract, inspect.isfunction):
        if name.startswith("_"):
            continue
        bound = getattr(implementation, name)
        if inspect.iscoroutinefunction(declared):
            methods[name] = _calling(bound, loop)
        else:
            methods[name] = _streaming(bound, loop)
    proxy = type(f"{contract.__name__}Across", (), methods)
    return cast(T, proxy())


def _calling(method: Callable[..., Awaitable[Any]], loop: asyncio.AbstractEventLoop) -> Any:
    async def call(self: object, *args: Any, **kwargs: Any) -> Any:
        caller = asyncio.get_running_loop()
        args, kwargs = _iterators_from(caller, args, kwargs)

        async def there() -> Any:
            return await method(*args, **kwargs)

        return await on_loop(loop, there())

    return call


def _streaming(method: Callable[..., AsyncIterator[Any]], loop: asyncio.AbstractEventLoop) -> Any:
    async def stream(self: object, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        caller = asyncio.get_running_loop()
        args, kwargs = _iterators_from(caller, args, kwargs)

        async def make() -> AsyncIterator[Any]:  # made there: it may bind to its loop
            return method(*args, **kwargs)

        iterator = await on_loop(loop, make())
        async for item in iterate_on(loop, iterator):
            yield item

    return stream


def _iterators_from(
    caller: asyncio.AbstractEventLoop, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments, each async iterator among them taken on ``caller`` (where it lives)."""

    def wrap(value: Any) -> Any:
        return iterate_on(caller, value) if isinstance(value, AsyncIterator) else value

    return tuple(wrap(a) for a in args), {k: wrap(v) for k, v in kwargs.items()}


def app_across(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> ASGIApp:
    """``app`` run on ``loop`` for a server on another loop: its ``receive`` and ``send`` are
    the server's, called back on the server's loop (an observer's app, such as ``/metrics``,
    reads the roles' state, which only their own loop may touch)."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        server = asyncio.get_running_loop()

        async def receive_here() -> Any:
            return await on_loop(server, receive())

        async def send_here(message: Any) -> None:
            await on_loop(server, send(message))

        async def serve() -> None:
            await app(scope, receive_here, send_here)

        await on_loop(loop, serve())

    return served


_thread = threading.local()


def signal_loop() -> asyncio.AbstractEventLoop:
    """Where this process's signal handlers go: the running loop, or, on a role's own loop, the
    loop that started it (signal handlers can only be set in the main thread)."""
    home: asyncio.AbstractEventLoop | None = getattr(_thread, "home", None)
    return home or asyncio.get_running_loop()


class LoopThread:
    """A thread running an event loop of its own, for one role, until :meth:`close`; started
    from ``home``'s loop, the one its signals are handled on."""

    def __init__(self, name: str) -> None:
        self.home = asyncio.get_running_loop()
        factory = event_loop_factory()
        self.loop = factory() if factory is not None else asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        _thread.home = self.home
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on this thread's loop; its outcome here."""
        return await on_loop(self.loop, work)

    def call(self, callback: Callable[..., object], *args: object) -> None:
        """Call ``callback(*args)`` soon on this thread's loop (from any thread)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    async def close(self) -> None:
        """Cancel what still runs there, stop the loop and wait for the thread to end (off
        this loop: the join blocks)."""
        if self.loop.is_closed():
            return

        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            await self.run(cancel_rest())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
