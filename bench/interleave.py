"""Before/after comparison of a bench between two checkouts, in interleaved rounds.

    .venv/bin/python bench/interleave.py --before /tmp/trine-before --after . --rounds 5 \\
        --topologies all,split
    .venv/bin/python bench/interleave.py --before A --after B --rounds 1 \\
        --runs 1 --concurrency 1 --sequential 1 --topologies all     # a smoke test

Runs `bench/throughput.py` (or `--script`) of each checkout with that checkout's own
`.venv/bin/python` (each checkout's own code: `make setup` in each), from the checkout's root,
alternately: before, after, before, after... for `--rounds N` (2N runs in all), so the machine's
drift hits both sides alike. Every option this script does not know is passed on to the bench
(e.g. `--topologies all,split`, `--runs 500`); so is everything after `--` (e.g. `-- --rounds 3`
for the bench's own rounds, as this script's `--rounds` is the number of before/after pairs).

Each run's output is echoed to stderr as it comes. From the markdown tables a run prints, every
numeric cell is a figure, named by its row's key cells (topology, wire, mode, phase, process,
workload, streams, message) and its column; rows labelled `median` are left out (the rounds
they sum up are in).
At the end it prints the exact command lines, then a markdown table: per figure, the median of
each side's values (one per run, or per round of the bench's own `--rounds`), after ÷ before of
the medians, each side's range and number of values. A run that fails or prints no table is
reported and left out; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEY_COLUMNS = ("topology", "wire", "mode", "phase", "process", "workload", "streams", "message")
SIDES = ("before", "after")
Figures = dict[tuple[str, str], list[float]]  # (row's key cells, column): values, a row each


def number(cell: str) -> float | None:
    """A cell's value (``72%`` → 72, ``1,015`` → 1015, ``nan`` → nan), or None if not a number."""
    try:
        return float(cell.strip().rstrip("%").replace(",", ""))
    except ValueError:
        return None


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def figures(output: str) -> Figures:
    """Every numeric cell of every markdown table in ``output`` (a header row, a ``|---`` row,
    then rows), keyed by the row's key cells and the column's name: a value per row (several
    when the bench ran several rounds)."""
    found: Figures = {}
    lines = output.splitlines()
    for i, line in enumerate(lines[:-1]):
        if not (line.startswith("|") and lines[i + 1].startswith("|---")):
            continue
        header = cells(line)
        keys = [j for j, name in enumerate(header) if name in KEY_COLUMNS]
        for row_line in lines[i + 2 :]:
            if not row_line.startswith("|"):
                break
            row = cells(row_line)
            if len(row) != len(header) or (header[0] == "round" and row[0] == "median"):
                continue
            what = " · ".join(row[j] for j in keys)
            for j, name in enumerate(header):
                value = number(row[j])
                if j in keys or name == "round" or value is None:
                    continue
                found.setdefault((what, name), []).append(value)
    return found


def run_once(side: str, checkout: Path, argv: list[str], label: str) -> tuple[int, str]:
    """One run of the bench, its stdout echoed to stderr line by line; (exit status, stdout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    print(f"\n== {label} {side}: {shlex.join(argv)}  (in {checkout})", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=checkout, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        print(f"{side:>6} | {line}", end="", file=sys.stderr, flush=True)
    status = proc.wait()
    took = time.monotonic() - started
    print(f"== {label} {side}: exit {status}, {took:.0f} s", file=sys.stderr, flush=True)
    return status, "".join(out)


def describe(checkout: Path) -> str:
    try:
        argv = ["git", "-C", str(checkout), "describe", "--always", "--dirty"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def print_comparison(runs: dict[str, list[Figures]]) -> None:
    order: dict[tuple[str, str], None] = {}  # every figure, in the order the runs printed them
    for side in SIDES:
        for found in runs[side]:
            order.update(dict.fromkeys(found))
    print("| row | figure | before | after | after ÷ before | before range | after range | n |")
    print("|---|---|---|---|---|---|---|---|")
    for key in order:
        values = {side: [v for f in runs[side] for v in f.get(key, [])] for side in SIDES}
        med = {side: median(values[side]) for side in SIDES}
        ratio = med["after"] / med["before"] if med["before"] else math.nan
        spread = {
            side: f"{fmt(min(vs))} to {fmt(max(vs))}" if vs else "-" for side, vs in values.items()
        }
        n = "/".join(str(len(values[side])) for side in SIDES)
        row = [
            *key,
            fmt(med["before"]),
            fmt(med["after"]),
            "-" if math.isnan(ratio) else f"{ratio:.3f}",
        ]
        print("| " + " | ".join([*row, spread["before"], spread["after"], n]) + " |")


def main() -> None:
    argv = sys.argv[1:]
    tail = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--before", type=Path, required=True, metavar="DIR", help="baseline checkout")
    p.add_argument("--after", type=Path, required=True, metavar="DIR", help="changed checkout")
    p.add_argument("--rounds", type=int, default=5, help="before/after pairs (default 5)")
    p.add_argument("--script", default="bench/throughput.py", help="the bench, in each checkout")
    p.add_argument("--keep", type=Path, metavar="DIR", help="write each run's stdout in DIR")
    args, extra = p.parse_known_args(own)
    extra += tail
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    commands = {}
    for side, checkout in checkouts.items():
        python, script = checkout / ".venv" / "bin" / "python", checkout / args.script
        if not python.exists() or not script.exists():
            p.error(f"--{side} {checkout}: needs {python} (make setup there) and {script}")
        commands[side] = [str(python), str(script), *extra]
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Figures]] = {side: [] for side in SIDES}
    failed: list[str] = []
    for r in range(args.rounds):
        for side in SIDES:
            label = f"round {r + 1}/{args.rounds}"
            status, out = run_once(side, checkouts[side], commands[side], label)
            if args.keep:
                (args.keep / f"{r + 1:02d}-{side}.out").write_text(out)
            found = figures(out)
            if status != 0 or not found:
                failed.append(f"{label} {side}: exit {status}, {len(found)} figures")
            else:
                runs[side].append(found)
    here = Path.cwd()
    print(f"\n`{args.script}`, before vs after, {args.rounds} interleaved rounds:\n")
    print(f"    {shlex.join([sys.executable, *sys.argv])}  # in {here}")
    for side, checkout in checkouts.items():
        print(f"    {side}: {describe(checkout)} in {checkout}: {shlex.join(commands[side])}")
    print()
    print_comparison(runs)
    if failed:
        print("\nFailed runs, left out:\n\n" + "\n".join(f"- {what}" for what in failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
