"""Builds (docs/versioning.md): the build id a worker registers with, and each function's
versioning and on_workflow_error settings, as the coordinator receives them."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

import trine
from trine_proto.trine.v1 import VersioningMode, WorkflowErrorMode


def served_module(path: Path, name: str, source: str) -> types.ModuleType:
    """A module of workflow functions written to ``path`` and imported, as a deployment's."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_an_explicit_build_id_is_sent_with_the_registration_and_each_function(
    coordinator, make_worker, serve, monkeypatch
) -> None:
    monkeypatch.setenv("TRINE_BUILD_ID", "from-env")
    worker = make_worker(build_id="v42")

    @worker.function(versioning="pinned", on_workflow_error="fail")
    async def pinned(ctx: trine.Context, _: None) -> None: ...

    @worker.function
    async def defaults(ctx: trine.Context, _: None) -> None: ...

    serve(worker)
    session = await coordinator.registered()
    register = session.register
    assert register.build_id == "v42"
    specs = {spec.name: spec for spec in register.functions}
    assert (specs["pinned"].versioning, specs["pinned"].on_workflow_error) == (
        VersioningMode.PINNED,
        WorkflowErrorMode.FAIL,
    )
    assert (specs["defaults"].versioning, specs["defaults"].on_workflow_error) == (
        VersioningMode.AUTO_UPGRADE,
        WorkflowErrorMode.BLOCK,
    )
    assert {spec.build_id for spec in register.functions} == {"v42"}


async def test_the_build_id_comes_from_the_environment_when_not_given(
    coordinator, make_worker, serve, monkeypatch
) -> None:
    monkeypatch.setenv("TRINE_BUILD_ID", "from-env")
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None: ...

    serve(worker)
    session = await coordinator.registered()
    assert session.register.build_id == "from-env"
    assert worker.build_id == "from-env"


async def test_the_default_build_id_is_a_digest_of_the_code_served(
    coordinator, make_worker, serve, monkeypatch
) -> None:
    monkeypatch.delenv("TRINE_BUILD_ID", raising=False)
    worker = make_worker()

    @worker.function
    async def wf(ctx: trine.Context, _: None) -> None: ...

    serve(worker)
    session = await coordinator.registered()
    build_id = session.register.build_id
    assert re.fullmatch(r"[0-9a-f]{12}", build_id)
    assert worker.build_id == build_id
    # The same code served by another worker (a restart) has the same build.
    again = make_worker()
    again.function(wf)
    assert again.build_id == build_id


def test_the_digest_changes_with_the_code_and_not_otherwise(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("TRINE_BUILD_ID", raising=False)
    code = "async def wf(ctx, _):\n    return {!r}\n"

    def build_of(source: str) -> str:
        worker = trine.Worker()
        worker.function(served_module(tmp_path / "flows.py", "trine_test_flows", source).wf)
        return worker.build_id

    try:
        first = build_of(code.format(1))
        same = build_of(code.format(1))
        edited = build_of(code.format(2))
    finally:
        sys.modules.pop("trine_test_flows", None)
    assert first == same
    assert edited != first


@pytest.mark.parametrize(
    ("parameter", "value", "allowed"),
    [
        ("versioning", "latest", "'auto_upgrade' or 'pinned'"),
        ("on_workflow_error", "retry", "'block' or 'fail'"),
    ],
)
def test_an_unknown_setting_is_a_value_error_naming_the_parameter(
    parameter: str, value: str, allowed: str
) -> None:
    worker = trine.Worker()
    with pytest.raises(ValueError, match=parameter) as caught:
        worker.function(**{parameter: value})
    assert str(caught.value) == f"{parameter} must be {allowed}, not {value!r}"


def test_a_blank_build_id_is_refused() -> None:
    with pytest.raises(ValueError, match="build_id"):
        trine.Worker(build_id=" ")
