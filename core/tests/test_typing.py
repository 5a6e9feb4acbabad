"""mypy sees the seam: a message field that does not exist, a client that does not implement its
contract, or the wrong contract asked for, each fails the type check (and the right code passes).

The snippets are checked the way the project's own code is, with mypy --strict: if generated
messages were ``Any`` again, or ``need()`` returned ``Any``, the wrong snippets would pass.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

RIGHT = """
from trine_core import Backend, RoleContext
from trine_proto.trine.v1 import GetRunRequest, Run

async def read(context: RoleContext) -> str:
    backend: Backend = context.need(Backend)
    run: Run = await backend.get_run(GetRunRequest(run_id="r"))
    return run.function
"""

WRONG = {
    "a message field that does not exist": (
        """
        from trine_proto.trine.v1 import Run

        def f(run: Run) -> str:
            return run.no_such_field
        """,
        '"Run" has no attribute "no_such_field"',
    ),
    "a client that misses a contract method": (
        """
        from trine_core import Backend
        from trine_proto.trine.v1 import GetRunRequest, Run

        class HalfBackend:
            async def get_run(self, message: GetRunRequest) -> Run:
                return Run()

        backend: Backend = HalfBackend()
        """,
        'Incompatible types in assignment (expression has type "HalfBackend", variable has '
        'type "Backend")',
    ),
    "a contract method with the wrong message type": (
        """
        from trine_core import Backend
        from trine_proto.trine.v1 import GetRunRequest

        async def f(backend: Backend) -> None:
            await backend.start_run(GetRunRequest(run_id="r"))
        """,
        'incompatible type "GetRunRequest"; expected "StartRunRequest"',
    ),
    "a method of another contract on a need": (
        """
        from trine_core import Backend, RoleContext
        from trine_proto.trine.v1 import TakeWorkRequest

        async def f(context: RoleContext) -> None:
            await context.need(Backend).take_work(TakeWorkRequest())
        """,
        '"Backend" has no attribute "take_work"',
    ),
}


def check(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(source))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--disable-error-code=type-abstract",
            "--cache-dir=" + str(tmp_path / ".mypy_cache"),
            str(path),
        ]
    )
    return out + err, status


def test_right_code_passes(tmp_path: Path) -> None:
    output, status = check(tmp_path, RIGHT)
    assert status == 0, output


@pytest.mark.parametrize(("source", "error"), WRONG.values(), ids=list(WRONG))
def test_wrong_code_fails(tmp_path: Path, source: str, error: str) -> None:
    output, status = check(tmp_path, source)
    assert status == 1, output
    assert error in output
