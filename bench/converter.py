"""Typed conversion (pydantic models, dataclasses) against plain dicts, on the `order` workload.

    .venv/bin/python bench/converter.py --rounds 5                  # micro: µs per conversion
    .venv/bin/python bench/converter.py --rounds 5 --e2e --e2e-rounds 5     # then end to end
    .venv/bin/python bench/converter.py --no-micro --e2e --e2e-rounds 5 --runs 2000

Micro (in this process): ``trine.PydanticConverter`` on the payloads of one `order` run, as the
worker converts them: the workflow's input decoded into its declared type, each step's output
encoded (``to_json``) and read back into its step function's return type (``from_json``, as
``ctx.step`` does the first time and on every replay), the result encoded. Each operation is
timed (``timeit``, ``--number`` calls) for the three ways to declare the types: plain dicts
(``dict[str, Any]``, the converter's fast path), pydantic models (examples/order_worker.py's
``Order``, ``Validated``, ``Charged``, ``Shipped``, ``OrderResult``) and stdlib dataclasses of the
same fields. The variants are interleaved within each of ``--rounds`` rounds; the tables give the
median µs per call and the ratio to plain dicts, then the sum over one run. Two more tables: what a
typed step costs around the converter (building the output, the input digest, the declared-type
lookup), and a model's ``to_json`` broken into its parts.

End to end (``--e2e``): per round, a fresh ``trine --target=all`` and one
``examples/order_worker.py`` (``--max-concurrency 100``) with ``ORDER_TYPED=0``, then a fresh one
with ``ORDER_TYPED=1`` (the other way round every other round, to spread the machine's drift);
``--warmup`` runs, then ``--runs`` runs at ``--concurrency`` over HTTP (bench/throughput.py's
``concurrent``). Prints runs/s, p50/p99 latency and the CPU seconds per 1,000 runs of the worker
and of the runtime (measured over the timed runs only), one row per variant and round, then the
medians, typed ÷ plain of the medians and the median of each round's typed ÷ plain (the two
variants of a round ran back to back, under the same load). It checks that both variants give the
same result and step outputs, and says whether their step input digests differ (a model
argument is digested by its fields, so the same JSON should give the same digest).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import cpu_s, percentile, proc_figures, running_cluster, session
from throughput import concurrent, order_input

import trine
from trine import _codec, _declared, _guards
from trine.converter import _ANY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import order_worker as ow  # the worker's own models and step bodies

VARIANTS = ("plain", "model", "dataclass")
PlainDict = dict[str, Any]


# -- the dataclass variant: the same fields as the models ------------------------------------------


@dataclasses.dataclass
class ItemD:
    sku: str
    qty: int


@dataclasses.dataclass
class OrderD:
    order_id: str
    customer: str
    items: list[ItemD]
    amount: float


@dataclasses.dataclass
class ValidatedD:
    step: str
    order_id: str
    ok: bool


@dataclasses.dataclass
class ChargedD:
    step: str
    order_id: str
    charged: float
    txn: str


@dataclasses.dataclass
class ShippedD:
    step: str
    order_id: str
    tracking: str


@dataclasses.dataclass
class OrderResultD:
    order_id: str
    status: str
    steps: tuple[ValidatedD, ChargedD, ShippedD]


def validate_d(order: OrderD) -> ValidatedD:
    return ValidatedD(step="validate", order_id=order.order_id, ok=len(order.items) > 0)


def charge_d(order: OrderD) -> ChargedD:
    return ChargedD(
        step="charge", order_id=order.order_id, charged=order.amount, txn="txn-" + order.order_id
    )


def ship_d(order: OrderD) -> ShippedD:
    return ShippedD(step="ship", order_id=order.order_id, tracking="trk-" + order.order_id)


# -- one run's payloads, per variant ---------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    input_type: Any
    order: Any  # the decoded input the step bodies take
    bodies: dict[str, Callable[[Any], Any]]  # step name: body
    step_types: dict[str, Any]  # step name: the body's declared return type
    result: Callable[[Any, list[Any]], Any]  # (order, step outputs) -> the workflow's result


STEPS = ("validate", "charge", "ship")


def variants(input_json: bytes) -> dict[str, Variant]:
    conv = trine.PydanticConverter()
    plain_bodies = dict(zip(STEPS, (ow.step_validate, ow.step_charge, ow.step_ship), strict=True))
    model_bodies = dict(
        zip(STEPS, (ow.typed_validate, ow.typed_charge, ow.typed_ship), strict=True)
    )
    dc_bodies = dict(zip(STEPS, (validate_d, charge_d, ship_d), strict=True))
    return {
        "plain": Variant(
            PlainDict,
            conv.from_json(input_json, PlainDict, "input"),
            plain_bodies,
            {name: PlainDict for name in STEPS},
            lambda o, s: {"order_id": o["order_id"], "status": "completed", "steps": s},
        ),
        "model": Variant(
            ow.Order,
            conv.from_json(input_json, ow.Order, "input"),
            model_bodies,
            {name: _declared.return_type(fn) for name, fn in model_bodies.items()},
            lambda o, s: ow.OrderResult(order_id=o.order_id, status="completed", steps=tuple(s)),
        ),
        "dataclass": Variant(
            OrderD,
            conv.from_json(input_json, OrderD, "input"),
            dc_bodies,
            {name: _declared.return_type(fn) for name, fn in dc_bodies.items()},
            lambda o, s: OrderResultD(order_id=o.order_id, status="completed", steps=tuple(s)),
        ),
    }


def operations(
    conv: trine.Converter, input_json: bytes, v: Variant
) -> dict[str, Callable[[], object]]:
    """What the worker converts in one run, as zero-argument calls, by row name."""
    ops: dict[str, Callable[[], object]] = {
        "input: from_json": lambda: conv.from_json(input_json, v.input_type, "the input")
    }
    outputs = []
    for name in STEPS:
        value = v.bodies[name](v.order)
        data = conv.to_json(value, "out")
        type_ = v.step_types[name]
        ops[f"{name}: to_json"] = lambda value=value: conv.to_json(value, "the output")
        ops[f"{name}: from_json"] = lambda d=data, t=type_: conv.from_json(d, t, "the output")
        outputs.append(conv.from_json(data, type_, "out"))
    result = v.result(v.order, outputs)
    ops["result: to_json"] = lambda: conv.to_json(result, "the result")
    return ops


def one_run(conv: trine.Converter, input_json: bytes, v: Variant) -> Callable[[], object]:
    """One run's work in the worker besides its I/O, in sequence, as the SDK and the workflow do
    it: the input decoded; per step the digest of its argument, the body, the output's
    ``to_json`` and ``from_json``; the result built and encoded. (Not the declared-type lookup:
    the same in every variant, below.)"""

    def run() -> object:
        order = conv.from_json(input_json, v.input_type, "the input")
        outputs = []
        for name in STEPS:
            _codec.digest((order,))
            data = conv.to_json(v.bodies[name](order), "the output")
            outputs.append(conv.from_json(data, v.step_types[name], "the output"))
        return conv.to_json(v.result(order, outputs), "the result")

    return run


def around(v: Variant, variant: str) -> dict[str, Callable[[], object]]:
    """What a step costs around the converter: building its output (the body), the digest of
    its arguments (``_codec.digest``: json, or ``repr`` of what json refuses), and the lookup of
    its declared type, on the same function (cached) and on a new closure each call (as
    order_worker's ``durable`` makes one per step; the cache misses)."""
    body = v.bodies["charge"]

    def closure() -> Callable[..., Any]:
        if variant == "plain":

            def execute(order: PlainDict) -> PlainDict:
                return body(order)

            return execute

        def typed(order: Any) -> Any:
            return body(order)

        return functools.wraps(body)(typed)  # order_worker's typed closures

    return {
        "charge body (build the output)": lambda: body(v.order),
        "charge input digest": lambda: _codec.digest((v.order,)),
        "declared type, same function": lambda: _declared.return_type(body),
        "declared type, new closure": lambda: _declared.return_type(closure()),
    }


def to_json_parts(value: Any) -> dict[str, Callable[[], object]]:
    """A model's (or dataclass's) ``to_json``, part by part: json.dumps is tried first and
    raises, the guard walks the value, then pydantic encodes it."""

    def dumps_raises() -> object:
        try:
            return _codec.encode(value)
        except TypeError as error:
            return error

    error = dumps_raises()
    assert isinstance(error, TypeError)
    parts = {
        "PydanticConverter.to_json": lambda: trine.PydanticConverter().to_json(value, "x"),
        "1. json.dumps, raises TypeError": dumps_raises,
        "2. _guards.check_convertible (the walk)": lambda: _guards.check_convertible(
            value, "x", error
        ),
        "3. TypeAdapter(Any).dump_json": lambda: _ANY.dump_json(value),
    }
    if hasattr(value, "model_dump_json"):
        parts["pydantic alone: model.model_dump_json()"] = value.model_dump_json
    return parts


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def measure(
    table: dict[str, dict[str, Callable[[], object]]], rounds: int, number: int
) -> dict[str, dict[str, float]]:
    """Median µs per call of every (column: row: call), interleaved: each round times every
    row of every column, the columns in a rotating order."""
    times: dict[str, dict[str, list[float]]] = {
        c: {r: [] for r in rows} for c, rows in table.items()
    }
    columns = list(table)
    for i in range(rounds):
        order = columns[i % len(columns) :] + columns[: i % len(columns)]
        for row in table[columns[0]]:
            for column in order:
                if row in table[column]:
                    times[column][row].append(per_call_us(table[column][row], number))
    return {c: {r: statistics.median(v) for r, v in rows.items()} for c, rows in times.items()}


def print_variant_table(med: dict[str, dict[str, float]], sizes: dict[str, int]) -> None:
    print("| operation | bytes | plain µs | model µs | dataclass µs | model ÷ plain | dc ÷ plain |")
    print("|---|---|---|---|---|---|---|")
    for row in med["plain"]:
        p, m, d = (med[v][row] for v in VARIANTS)
        size = sizes.get(row)
        print(
            f"| {row} | {size if size is not None else ''} | {p:.1f} | {m:.1f} | {d:.1f} | "
            f"{m / p:.1f} | {d / p:.1f} |"
        )


def micro(args: argparse.Namespace) -> None:
    conv = trine.PydanticConverter()
    input_json = _codec.encode(order_input(1))
    vs = variants(input_json)
    table = {name: operations(conv, input_json, v) for name, v in vs.items()}
    # Every variant must put the same JSON on the wire, and read it back to what it encoded.
    sizes = {"input: from_json": len(input_json)}
    for row in table["plain"]:
        if row.endswith("to_json"):
            encoded = {name: table[name][row]() for name in VARIANTS}
            assert len(set(encoded.values())) == 1, (row, encoded)
            sizes[row] = len(encoded["plain"])
    for name, v in vs.items():
        assert conv.to_json(v.order, "x") == input_json, name
    print(
        f"\nPydanticConverter per call, median of {args.rounds} interleaved rounds of "
        f"{args.number} calls (pydantic {pydantic_version()}):\n"
    )
    med = measure(table, args.rounds, args.number)
    print_variant_table(med, sizes)
    totals = {name: sum(rows.values()) for name, rows in med.items()}
    print(
        f"| **one run** (input, 3 steps' to_json + from_json, result) | | {totals['plain']:.1f} | "
        f"{totals['model']:.1f} | {totals['dataclass']:.1f} | "
        f"{totals['model'] / totals['plain']:.1f} | {totals['dataclass'] / totals['plain']:.1f} |"
    )

    print("\nAround the converter, per step (charge), median µs per call:\n")
    med = measure({name: around(v, name) for name, v in vs.items()}, args.rounds, args.number)
    print_variant_table(med, {})
    steps = {
        name: 3 * (rows["charge body (build the output)"] + rows["charge input digest"])
        for name, rows in med.items()
    }
    for name, label in (("model", "pydantic models"), ("dataclass", "dataclasses")):
        conversion = totals[name] - totals["plain"]
        besides = steps[name] - steps["plain"]
        print(
            f"\n{label} against plain dicts, per run: {conversion:+.0f} µs in the converter, "
            f"{besides:+.0f} µs around it (3 step bodies and input digests, as charge's), "
            f"{conversion + besides:+.0f} µs in all.",
            end="",
        )
    print("\n\nOne run in sequence (input; per step digest, body, to_json, from_json; result):\n")
    med = measure(
        {name: {"one run": one_run(conv, input_json, v)} for name, v in vs.items()},
        args.rounds,
        args.number,
    )
    print_variant_table(med, {})

    print("\nA result's to_json, by part (median µs per call):\n")
    parts = measure(
        {
            "model": to_json_parts(_result(vs["model"])),
            "dataclass": to_json_parts(_result(vs["dataclass"])),
        },
        args.rounds,
        args.number,
    )
    plain_result = _result(vs["plain"])
    plain = measure(
        {"plain": {"json.dumps of the dict": lambda: _codec.encode(plain_result)}},
        args.rounds,
        args.number,
    )["plain"]["json.dumps of the dict"]
    print("| part | model µs | dataclass µs |")
    print("|---|---|---|")
    for row in parts["model"]:
        d = parts["dataclass"].get(row)
        print(f"| {row} | {parts['model'][row]:.1f} | {'' if d is None else f'{d:.1f}'} |")
    print(f"| (a plain dict result: json.dumps alone) | {plain:.1f} | {plain:.1f} |")


def _result(v: Variant) -> Any:
    """The workflow's result, as the variant's workflow returns it."""
    return v.result(v.order, [v.bodies[name](v.order) for name in STEPS])


def pydantic_version() -> str:
    import pydantic

    return pydantic.VERSION


# -- end to end ------------------------------------------------------------------------------------


async def sample(url: str) -> dict[str, Any]:
    """One run's result and journal (each entry's name, output and input digest)."""
    async with session(1) as http:
        body = {"function": "order", "input": order_input(7)}
        async with http.post(f"{url}/v1/runs?wait=60", json=body) as response:
            run = await response.json()
        async with http.get(f"{url}/v1/runs/{run['id']}/journal") as response:
            entries = (await response.json())["entries"]
    return {
        "result": json.dumps(run["result"]),
        "outputs": [json.dumps([e["name"], e["output"]]) for e in entries],
        "digests": [e.get("input_digest") for e in entries],
    }


def e2e_round(args: argparse.Namespace, typed: bool, label: str) -> tuple[dict[str, Any], Any]:
    name = "typed" if typed else "plain"
    with running_cluster("all", f"{label}-{name}", prefix="trine-converter-", report=False) as c:
        worker = c.start_worker(
            "order_worker.py", "--max-concurrency", "100", ORDER_TYPED="1" if typed else "0"
        )
        if args.warmup:
            asyncio.run(concurrent(c.url, args.warmup, min(args.concurrency, args.warmup)))
        worker_cpu, runtime_cpu = proc_figures(worker)["cpu_s"], cpu_s(c.runtime)
        latencies, wall = asyncio.run(concurrent(c.url, args.runs, args.concurrency))
        worker_cpu = proc_figures(worker)["cpu_s"] - worker_cpu
        runtime_cpu = cpu_s(c.runtime) - runtime_cpu
        seen = asyncio.run(sample(c.url))
        rss = proc_figures(worker)["rss_mb"]
    per_k = 1000 / args.runs
    row = {
        "round": label,
        "variant": name,
        "runs_s": args.runs / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "worker_cpu_s_per_1k": worker_cpu * per_k,
        "runtime_cpu_s_per_1k": runtime_cpu * per_k,
        "worker_rss_mb": rss,
    }
    return row, seen


E2E_COLUMNS = [
    ("runs_s", "{:.0f}"),
    ("p50_ms", "{:.0f}"),
    ("p99_ms", "{:.0f}"),
    ("worker_cpu_s_per_1k", "{:.2f}"),
    ("runtime_cpu_s_per_1k", "{:.2f}"),
    ("worker_rss_mb", "{:.0f}"),
]


def print_e2e_row(row: dict[str, Any]) -> None:
    cells = [row["round"], row["variant"]] + [fmt.format(row[k]) for k, fmt in E2E_COLUMNS]
    print("| " + " | ".join(cells) + " |", flush=True)


def e2e(args: argparse.Namespace) -> None:
    print(
        f"\nEnd to end: `order`, {args.runs} runs at concurrency {args.concurrency} (after "
        f"{args.warmup} warm-up runs) per variant and round, `--target=all`, one worker:\n"
    )
    print("| round | variant | " + " | ".join(k for k, _ in E2E_COLUMNS) + " |")
    print("|---" * (len(E2E_COLUMNS) + 2) + "|", flush=True)
    rows: dict[str, list[dict[str, Any]]] = {"plain": [], "typed": []}
    seen: dict[str, Any] = {}
    for r in range(args.e2e_rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for typed in order:
            row, seen[row["variant"]] = e2e_round(args, typed, str(r + 1))
            rows[row["variant"]].append(row)
            print_e2e_row(row)
    med = {
        v: {k: statistics.median(row[k] for row in rs) for k, _ in E2E_COLUMNS}
        for v, rs in rows.items()
    }
    for v in rows:
        print_e2e_row({"round": "median", "variant": v, **med[v]})
    ratio = {k: med["typed"][k] / med["plain"][k] for k, _ in E2E_COLUMNS}
    print(
        "| typed ÷ plain (medians) | | "
        + " | ".join(f"{ratio[k]:.2f}" for k, _ in E2E_COLUMNS)
        + " |"
    )
    # The same round's two variants ran back to back: their ratio shares the round's load.
    paired = {
        k: statistics.median(t[k] / p[k] for t, p in zip(rows["typed"], rows["plain"], strict=True))
        for k, _ in E2E_COLUMNS
    }
    print(
        "| typed ÷ plain (median of the rounds' ratios) | | "
        + " | ".join(f"{paired[k]:.2f}" for k, _ in E2E_COLUMNS)
        + " |"
    )
    extra_ms = med["typed"]["worker_cpu_s_per_1k"] - med["plain"]["worker_cpu_s_per_1k"]
    print(f"\nWorker CPU, typed minus plain: {extra_ms:+.3f} ms per run (medians).")
    same = seen["plain"]["result"] == seen["typed"]["result"]
    same = same and seen["plain"]["outputs"] == seen["typed"]["outputs"]
    print(f"Result and step outputs identical in both variants: {'yes' if same else 'NO'}")
    if not same:
        print(f"  plain: {seen['plain']}\n  typed: {seen['typed']}")
    if seen["plain"]["digests"] != seen["typed"]["digests"]:
        print(
            "Step input digests differ: "
            f"plain {seen['plain']['digests']}, typed {seen['typed']['digests']}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="micro: interleaved rounds")
    p.add_argument("--number", type=int, default=2000, help="micro: calls per timing")
    p.add_argument("--no-micro", action="store_true", help="skip the micro benchmark")
    p.add_argument("--e2e", action="store_true", help="run the end-to-end comparison")
    p.add_argument("--e2e-rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()
    if not args.no_micro:
        micro(args)
    if args.e2e:
        e2e(args)


if __name__ == "__main__":
    main()
