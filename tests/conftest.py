"""Fixtures for the cross-plugin tests: a trine cluster per topology, torn down after each test."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import TOPOLOGIES, Cluster


@pytest.fixture(scope="session", autouse=True)
def _certs_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The split topology's certificates (harness.dev_certs) go in the session's temp dir."""
    harness.CERTS_DIR = tmp_path_factory.mktemp("tls")


@pytest.fixture(params=TOPOLOGIES)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster in each topology; not started (a test may set flags or env first)."""
    c = Cluster(topology=request.param, workdir=tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """A started cluster with one order worker registered."""
    cluster.start()
    cluster.start_worker()
    return cluster


@pytest.fixture(autouse=True)
def _garbage_collected_in_its_own_test() -> Iterator[None]:
    """Collect each test's cyclic garbage at its own teardown: a socket or transport a test left
    unclosed then fails *that* test (pytest turns its ResourceWarning into an error), not a
    later one whose allocations happen to trigger the collection."""
    yield
    gc.collect()
