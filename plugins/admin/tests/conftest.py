"""Fixtures: the real gateway in front of core's in-memory engine (:mod:`served`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from served import Served, served


@pytest.fixture(autouse=True)
def _no_trine_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRINE_URL", raising=False)


@pytest.fixture
async def gateway(capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Served]:
    async with served(capsys) as gateway:
        yield gateway
