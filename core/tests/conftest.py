"""Fixtures for core's tests: a clean slate for the inline roles, and installed plugins made on
the spot (a ``*.dist-info`` folder on ``sys.path`` is all ``importlib.metadata`` needs)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from roles import Consumer, events


@pytest.fixture(autouse=True)
def _clear() -> None:
    events.clear()
    Consumer.got.clear()


Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """``install(dist, group, name, source)``: a distribution whose module ``dist`` (written from
    ``source``) is the entry point ``name`` of ``group``."""

    def make(dist: str, group: str, name: str, source: str) -> None:
        (tmp_path / f"{dist}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {dist}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, dist, raising=False)

    return make
