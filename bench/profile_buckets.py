"""Where a process spends its time: the share of a py-spy profile's samples in each bucket, or
a cProfile dump's own time in the same buckets (:func:`cprofile_seconds`, for ``bench/latency.py
--profile``).

    .venv/bin/python bench/profile_buckets.py /tmp/prof/*.json    # speedscope files from py-spy

A sample goes to the bucket of its innermost frame that belongs to a bucket: the standard library
(other than asyncio) is transparent, so ``enum`` or ``struct`` called by betterproto2 counts as
the codec, and trine's code calling the codec counts as the codec, not as trine. A sample with no
bucketed frame is ``other``. py-spy sees Python frames only: a rocksdict or uvloop call shows as
the Python frame that made it, so ``rocksdb`` is time whose innermost frame is in
``trine_engine/storage/store.py`` (thin wrappers over rocksdict: mostly the synced
``Store.write``), and
uvloop's C loop shows as ``asyncio``. Samples py-spy judged idle are not recorded at all, so the
shares are of the process's busy time. Every thread's samples are counted.

A cProfile dump has no stacks, only each function's own time and its callers: a function's own
time goes to the bucket of its own file, so the standard library's (``json``, ``dataclasses``,
``asyncio.streams``) is ``other`` or ``asyncio`` there, not its caller's bucket. And it holds
the threads it was enabled in only: ``bench/latency.py --profile`` enables it in the main
thread, so the engine's sync thread (the fsyncs of batches written unsynced) is not in it.
"""

from __future__ import annotations

import argparse
import json
import pstats
from collections import Counter
from pathlib import Path
from typing import Any

# (bucket, substrings of a frame's file path); the first match wins for a frame.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("rocksdb", ("/trine_engine/storage/store.py", "/rocksdict/")),
    ("betterproto2 codec", ("/betterproto2/", "/trine_proto/")),
    ("grpclib+h2", ("/grpclib/", "/h2/", "/hpack/", "/hyperframe/", "/trine_transport_grpc/")),
    ("litestar+uvicorn", ("/litestar/", "/uvicorn/", "/httptools/", "/h11/", "/msgspec/")),
    ("trine_engine", ("/trine_engine/",)),
    ("trine_coordinator", ("/trine_coordinator/",)),
    ("trine_gateway", ("/trine_gateway/",)),
    ("trine sdk", ("/sdk/python/src/trine/", "/site-packages/trine/")),
    ("asyncio", ("/asyncio/", "/uvloop/", "/selectors.py")),
]
ORDER = [name for name, _ in BUCKETS] + ["other"]


def frame_bucket(path: str) -> str | None:
    for name, needles in BUCKETS:
        if any(needle in path for needle in needles):
            return name
    return None


def sample_bucket(stack: list[int], buckets: list[str | None]) -> str:
    """``stack`` is root first (speedscope's order): walk it from the leaf."""
    for index in reversed(stack):
        bucket = buckets[index]
        if bucket is not None:
            return bucket
    return "other"


def bucket_shares(profile: dict[str, Any]) -> tuple[dict[str, float], float]:
    """Share of sampled time per bucket (in ``ORDER``) and the sampled seconds, all threads."""
    frames = profile["shared"]["frames"]
    buckets = [frame_bucket(frame.get("file") or "") for frame in frames]
    weights: Counter[str] = Counter()
    for thread in profile["profiles"]:
        samples = thread.get("samples", [])
        per_sample = thread.get("weights") or [1.0] * len(samples)
        for stack, weight in zip(samples, per_sample, strict=True):
            weights[sample_bucket(stack, buckets)] += weight
    total = sum(weights.values())
    return {name: (weights[name] / total if total else 0.0) for name in ORDER}, total


def load(path: Path) -> tuple[dict[str, float], float]:
    return bucket_shares(json.loads(path.read_text()))


def cprofile_seconds(path: Path) -> tuple[Counter[str], dict[str, tuple[float, int]]]:
    """A ``cProfile`` dump's own time (``tottime``) per bucket (``ORDER``) and per function
    (``file:line(name)``: seconds, calls). The same buckets as py-spy's, by the file of the
    function that spent the time; a C function (file ``~``: ``Rdict.write``, the synced commit)
    goes to the bucket of the caller that spent most in it, as py-spy shows C time in the Python
    frame that made the call. cProfile counts wall time: a call that blocks (an fsync, a socket
    write that hands the CPU to the process it woke) counts whole."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    seconds: Counter[str] = Counter()
    functions: dict[str, tuple[float, int]] = {}
    for (file, line, name), (_, calls, own, _, callers) in stats.items():
        owner = file
        if file == "~" and callers:
            owner = max(callers.items(), key=lambda item: item[1][3])[0][0]
        seconds[frame_bucket(owner) or "other"] += own
        functions[f"{file.rsplit('site-packages/', 1)[-1]}:{line}({name})"] = (own, calls)
    return seconds, functions


def print_table(paths: list[Path]) -> None:
    """One markdown row per profile file: its name, the busy seconds sampled, % per bucket."""
    print("| profile | busy s | " + " | ".join(ORDER) + " |")
    print("|---" * (len(ORDER) + 2) + "|")
    for path in paths:
        shares, seconds = load(path)
        cells = [f"{shares[name] * 100:.0f} %" for name in ORDER]
        print(f"| {path.stem} | {seconds:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="speedscope files from py-spy")
    print_table(parser.parse_args().profiles)
