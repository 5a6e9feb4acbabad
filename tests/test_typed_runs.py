"""Typed inputs and outputs end to end, in every topology (issue 10, item 2): the checkout example
is typed with pydantic models and a dataclass throughout (input, step output, child input and
result, signal payload, result); a client passing the workflow function gets an ``Invoice``
back; a cart of the wrong shape fails the run with an error naming the workflow, the field and
the type; and mypy flags a wrong step argument or a wrong input in the example's code.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

from harness import EXAMPLES, ROOT, Cluster, wait_run

import trine

WORKER = "checkout_worker.py"


def load_example() -> ModuleType:
    """The example as a module, as a client importing the worker's code would have it."""
    spec = importlib.util.spec_from_file_location("checkout_worker", EXAMPLES / WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


def test_a_pydantic_typed_workflow_round_trips(cluster: Cluster) -> None:
    example = load_example()
    cluster.start()
    cluster.start_worker(WORKER)
    cart = example.Cart(customer="c-1", lines=[{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}])

    async def scenario() -> tuple[str, object]:
        async with trine.Client(cluster.url) as client:
            run = await client.start(example.checkout, cart)
            await client.signal(run["id"], "confirm", example.Confirmation(by="ana"))
            invoice = await client.result(run["id"], timeout=30, result_type=example.Invoice)
            return str(run["id"]), invoice

    run_id, invoice = asyncio.run(scenario())
    assert isinstance(invoice, example.Invoice)
    assert invoice.customer == "c-1"
    assert invoice.total == Decimal("23.25")
    assert invoice.confirmed_by == "ana"
    assert invoice.hold_id.startswith("hold-")
    with cluster.client() as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        journal = http.get(f"/v1/runs/{run_id}/journal").json()["entries"]
        child = http.get(f"/v1/runs/{invoice.hold_id.removeprefix('hold-')}").json()
    assert run["input"] == {
        "customer": "c-1",
        "lines": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
    }
    price = next(entry for entry in journal if entry["name"] == "price")
    assert price["output"]["total"] == "23.25"  # a Decimal, journaled as pydantic writes it
    assert child["function"] == "reserve"
    assert child["input"] == {"skus": ["A1", "B7"]}
    assert child["result"] == {"hold_id": invoice.hold_id, "skus": ["A1", "B7"]}


def test_a_cart_of_the_wrong_shape_fails_naming_workflow_field_and_type(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker(WORKER)
    with cluster.client() as http:
        response = http.post(
            "/v1/runs",
            json={"function": "checkout", "input": {"customer": "c-1", "lines": [{"sku": "A1"}]}},
        )
        assert response.status_code == 201, response.text
        final = wait_run(http, response.json()["id"])
    assert final["status"] == "failed", final
    assert final["error"]["type"] == "ConversionError"
    message = final["error"]["message"]
    assert message.startswith("the input of workflow 'checkout' is not a valid Cart:"), message
    assert "lines.0.qty: Field required" in message


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on one file; the cache beside it makes the checks after the first quick."""
    cache = path.parent / ".mypy_cache"
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_mypy_flags_a_wrong_step_argument_and_a_wrong_input(tmp_path: Path) -> None:
    source = (EXAMPLES / WORKER).read_text()
    good = tmp_path / "good.py"
    good.write_text(source)
    checked = mypy(good)
    assert checked.returncode == 0, checked.stdout

    mistakes = {
        # a step argument of the wrong type
        "step": (
            'await ctx.step("price", price, cart, await ctx.now())',
            'await ctx.step("price", price, cart.lines, await ctx.now())',
        ),
        # a child's input of the wrong type
        "child": (
            "await ctx.run(reserve, Reservation(skus=[line.sku for line in cart.lines]))",
            "await ctx.run(reserve, cart)",
        ),
        # a child's result used as the wrong type
        "result": ("hold_id=reserved.hold_id,", "hold_id=reserved.skus,"),
    }
    for name, (right, wrong) in mistakes.items():
        assert right in source, name
        line = source[: source.index(right)].count("\n") + 1
        path = tmp_path / f"wrong_{name}.py"
        path.write_text(source.replace(right, wrong))
        checked = mypy(path)
        assert checked.returncode == 1, (name, checked.stdout)
        errors = [row for row in checked.stdout.splitlines() if ": error:" in row]
        assert errors, (name, checked.stdout)
        assert all(row.startswith(f"{path}:{line}:") for row in errors), (name, errors)
