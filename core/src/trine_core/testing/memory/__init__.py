"""``MemoryEngine``: a small in-memory engine with both contracts (``memory.backend: Backend``,
``memory.dispatcher: Dispatcher``), for tests that need an engine but not the real one.

Plugin tests should meet the engine's behaviour as docs/internals.md ("Runs") describes it, not a
hand-written fake that drifts from it: this passes the contract suites the engine passes. It models
runs, journals, events (the engine's types and data), idempotency keys, leases as fence tokens,
step retries, sleeps, signals, child runs, cancellation, and what docs/versioning.md adds: builds
(a run keeps its first reporter's; a pinned run goes only to its build, or where it is moved), patch
markers, blocked runs (resumed by a retry, or when another build registers their function) and
retries of failed runs. No timers of its own and no persistence, to stay small and deterministic:
pending sleeps and signal waits fire only when a test calls ``fire_timers()``, leases never
expire, and ``deadline_ms``, ``cancel_deadline_ms`` and ``not_before_ms`` are only fields (no run
times out, no cancellation is forced, a retry may be taken at once).

Hooks for tests: ``calls`` (every contract call in order, as ``(method name, request)``: what a
consumer sent); ``await called(method, count)`` (until a consumer working in the background made
it); ``fail_with`` (while set, every contract call raises it, after being recorded, and so does an
open subscription, at once); ``open_subscriptions`` (subscriptions being iterated, not yet ended
or closed); ``await until(ready)`` (until ``ready()`` holds, checked after every change, a
subscription closing included); ``fire_timers()`` (every sleep and signal timeout due by
``clock()`` fires); ``clock`` (milliseconds: pass a fixed one for stable times); ``functions=``
(registered without a call).

Modules: :mod:`.runs` (a run's state, the hooks, the changes both sides make), :mod:`.builds`
(the builds known from registrations and takers), :mod:`.reads` (the ``Backend`` side),
:mod:`.reports` (the ``Dispatcher`` side: leases and reports), :mod:`.commands` (a report's
commands, one handler per kind), :mod:`.engine` (the two sides together).
"""

from __future__ import annotations

from trine_core.testing.memory.engine import MemoryEngine

__all__ = ["MemoryEngine"]
