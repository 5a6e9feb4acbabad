"""examples/order_worker.py with OpenTelemetry set up the way a user would: one call to
``trine_tracing.configure()`` from the ``OTEL_*`` variables, before the worker starts. Every
``ORDER_*`` variable of the example works as there."""

from __future__ import annotations

import runpy
from pathlib import Path

from trine_tracing import configure

configure(service_name="order-worker")
runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "examples" / "order_worker.py"), run_name="__main__"
)
