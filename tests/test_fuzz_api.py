"""Schemathesis against a live cluster's own OpenAPI document, in both topologies (issue 14):
every check (no 5xx, responses that match the schema, schema-valid requests accepted and
invalid ones refused, ...) must pass.

It runs schemathesis' CLI (``st``, from requirements-dev.txt) as a subprocess: its own process
keeps hypothesis' state out of this one, and its report is what a developer replays. Bounded so
it fits CI: a fixed seed, ``MAX_EXAMPLES`` per operation and ``MAX_TIME_S`` for the whole run.

The gateway's browser checks need no configuration: schemathesis addresses 127.0.0.1 (a name of
the gateway's), sends JSON bodies as ``application/json`` and sends no ``Origin``.

One check is configured (:data:`CONFIG`): ``positive_data_acceptance`` also accepts 422. A start
that reuses an Idempotency-Key with another request is schema-valid yet refused with 422
``idempotency_conflict`` (documented), because of an earlier request, not of its own data; the
check's default list already admits 409 for the same kind of refusal.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import Cluster

MAX_EXAMPLES = 25
MAX_TIME_S = 100
SEED = 14
ST = Path(sys.executable).with_name("st")
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


def test_schemathesis_finds_nothing(running: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        str(ST),
        f"--config-file={config}",
        "run",
        f"{running.url}/schema/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        f"--max-time={MAX_TIME_S}",
        f"--seed={SEED}",
        "--workers=1",
        "--request-timeout=20",
        "--generation-database=none",
        "--no-color",
    ]
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME_S + 120
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-12_000:]
    generated = re.search(r"(\d+) generated", report)
    assert generated is not None, report[-4000:]
    assert int(generated.group(1)) >= 300, report[-4000:]  # it did exercise the API
