"""The README's quickstart works as written."""

from __future__ import annotations

import re
import subprocess

from harness import ROOT, Cluster

README = (ROOT / "README.md").read_text()


def test_the_two_commands_are_make_run_and_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make run " in README
    assert "make test " in README
    assert re.search(r"^run: setup$", makefile, re.M)
    assert re.search(r"^test: ", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_quickstart_block_runs_against_a_live_trine(cluster: Cluster) -> None:
    block = README.split("<!-- quickstart -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    script = block.replace("localhost:7480", f"127.0.0.1:{cluster.http_port}")
    cluster.start()
    cluster.start_worker()
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "event: run.started" in out.stdout
    assert "event: step.completed" in out.stdout
    assert "event: run.completed" in out.stdout
    assert out.stdout.rstrip().endswith("}")
    assert '"status":"completed"' in out.stdout.replace(" ", "")
