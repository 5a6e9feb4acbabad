"""The committed generated package must match what proto/generate.sh makes from the .proto files."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

PROTO = Path(__file__).resolve().parents[1]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = str(PROTO / "generate.sh")
    subprocess.run(["bash", script, str(tmp_path)], check=True, env=env, capture_output=True)
    committed = PROTO / "src" / "trine_proto"
    stale = [
        str(path.relative_to(tmp_path))
        for path in tmp_path.rglob("*.py")
        if not filecmp.cmp(path, committed / path.relative_to(tmp_path), shallow=False)
    ]
    assert not stale, f"run `make proto`: generated code is stale: {stale}"


def test_messages_round_trip() -> None:
    from trine_proto.trine.v1 import Run, RunStatus

    run = Run(id="r1", function="order", status=RunStatus.PENDING, input=b'{"a":1}')
    assert Run.parse(bytes(run)) == run
