"""Testing workflows: replay checks of exported histories, and a runtime in the test's process.

- ``replay(worker, history)`` re-runs exported run histories (``GET /v1/runs/{id}/history``)
  against the worker's code, without running any step and without a runtime: a change that
  in-flight runs cannot replay raises ``trine.NonDeterminismError`` (docs/versioning.md).
- ``WorkflowEnvironment`` boots a runtime in-process for tests; it needs the runtime installed
  (``trine-core`` and its plugins), so it is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .replay import replay

if TYPE_CHECKING:
    from .environment import WorkflowEnvironment

__all__ = ["WorkflowEnvironment", "replay"]


def __getattr__(name: str) -> Any:
    # The environment imports the runtime, which a plain SDK install lacks: only on first use.
    if name == "WorkflowEnvironment":
        from .environment import WorkflowEnvironment

        return WorkflowEnvironment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
