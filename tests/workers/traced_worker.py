"""An example worker with OpenTelemetry set up the way a user would: one call to
``trine_tracing.configure()`` from the ``OTEL_*`` variables, before the worker starts.
``TRACED_EXAMPLE`` names the file in examples/ (default ``order_worker.py``); its own variables
(``ORDER_*``…) and arguments work as there."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from trine_tracing import configure

configure(service_name="order-worker")
example = os.environ.get("TRACED_EXAMPLE", "order_worker.py")
runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / example), run_name="__main__")
