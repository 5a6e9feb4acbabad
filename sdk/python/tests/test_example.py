"""``examples/order_worker.py`` as a process, against the fake coordinator."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "order_worker.py"
ORDER = {
    "order_id": "o-1",
    "customer": "c-42",
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
    "amount": 19.99,
}


async def test_order_worker_serves_order_records_effects_and_drains_on_sigterm(
    coordinator, item, entry, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.log"
    output = tmp_path / "worker.log"
    with output.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            "--max-concurrency",
            "3",
            env={
                "TRINE_WORKER_ADDR": f"127.0.0.1:{coordinator.port}",
                "ORDER_SIDE_EFFECT_LOG": str(effects),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=out,
            stderr=out,
        )
    try:
        session = await coordinator.registered()
        assert session.register.max_concurrency == 3
        [spec] = session.register.functions
        assert (spec.name, spec.retry.max_attempts) == ("order", 5)

        session.dispatch(item("r1", "order", ORDER))
        # A replay: validate is journaled, so only charge and ship execute.
        session.dispatch(item("r2", "order", ORDER, journal=[entry(0, "validate", {"v": 1})]))
        await coordinator.until(lambda: session.finished("r1") and session.finished("r2"))

        kind, value = session.commands("r1")[-1]
        assert kind == "run_completed"
        result = json.loads(value.result)
        assert result["order_id"] == "o-1"
        assert result["status"] == "completed"
        assert [s["step"] for s in result["steps"]] == ["validate", "charge", "ship"]
        assert result["steps"][1] == {
            "step": "charge",
            "order_id": "o-1",
            "charged": 19.99,
            "txn": "txn-o-1",
        }
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert session.drained
    rows = [line.split() for line in effects.read_text().splitlines()]
    # A result is known durable when the next step's body starts (the SDK acknowledged it
    # first); the last one commits with the run's end, so no line says so.
    assert [r for r in rows if r[1] == "r1"] == [
        ["exec", "r1", "validate"],
        ["ack", "r1", "validate"],
        ["exec", "r1", "charge"],
        ["ack", "r1", "charge"],
        ["exec", "r1", "ship"],
    ]
    assert [r for r in rows if r[1] == "r2"] == [
        ["ack", "r2", "validate"],  # replayed from the journal
        ["exec", "r2", "charge"],
        ["ack", "r2", "charge"],
        ["exec", "r2", "ship"],
    ]
    log = output.read_text()
    assert "registered" in log
    assert "worker stopped" in log
