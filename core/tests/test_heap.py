"""The collector settings the ``trine`` program takes once booted (``trine_core.heap``): run in a
child interpreter, since they are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

from trine_core.heap import GEN0_THRESHOLD


def settled(before: str = "") -> dict[str, object]:
    """The collector's state in a fresh interpreter after ``before`` and settle_after_boot."""
    code = (
        "import gc, json\n"
        f"{before}\n"
        "import weakref\n"
        "from trine_core.heap import settle_after_boot\n"
        "class Node: pass\n"
        "cycle = Node(); cycle.me = cycle; dropped = weakref.ref(cycle); del cycle\n"
        "settle_after_boot()\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'threshold': gc.get_threshold(),\n"
        "                  'garbage_kept': dropped() is not None}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_what_the_boot_left_is_frozen_and_the_young_generation_collected_less_often() -> None:
    defaults = json.loads(
        subprocess.run(
            [sys.executable, "-c", "import gc, json; print(json.dumps(gc.get_threshold()))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    state = settled()
    assert isinstance(state["frozen"], int)
    assert state["frozen"] > 1000  # modules, classes...
    assert state["garbage_kept"] is False  # collected before the freeze, not frozen forever
    assert state["threshold"] == [GEN0_THRESHOLD, defaults[1], defaults[2]]


def test_a_process_set_higher_keeps_its_threshold() -> None:
    state = settled(f"gc.set_threshold({GEN0_THRESHOLD * 3}, 20, 30)")
    assert state["threshold"] == [GEN0_THRESHOLD * 3, 20, 30]
