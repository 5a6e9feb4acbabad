"""Opening the data dir: format version, foreign contents, the lock; closing and reopening."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from trine_core import StorageError
from trine_engine import Engine, EngineConfig, Store
from trine_engine.storage.keys import FAMILIES, META, SIGNALS


def _families(path: Path) -> set[str]:
    return set(Rdict.list_cf(str(path), Options(raw_mode=True)))


def _set_format(path: Path, version: bytes, drop: str = "") -> None:
    """Write the format version by hand (and drop a column family), as another trine would."""
    raw = Rdict(str(path), Options(raw_mode=True))
    meta = raw.get_column_family(META)
    meta[b"format"] = version
    del meta
    if drop:
        raw.drop_column_family(drop)
    raw.close()
    del raw


def test_a_new_data_dir_gets_format_2(data_dir: Path) -> None:
    store = Store.open(data_dir)  # parents are created
    try:
        assert store.get(META, b"format") == b"2"
    finally:
        store.close()
    assert _families(data_dir) >= set(FAMILIES)


def test_an_unknown_format_is_refused_and_left_alone(data_dir: Path) -> None:
    Store.open(data_dir).close()
    _set_format(data_dir, b"99", drop=SIGNALS)  # a format with other families
    with pytest.raises(StorageError) as info:
        Store.open(data_dir)
    assert str(info.value) == (
        f"data dir {data_dir} has storage format 99; this trine reads format 2 (and upgrades "
        f"format 1)"
    )
    assert SIGNALS not in _families(data_dir)  # refused before anything was written
    # The refused open released the database: another open (here, after a repair) can proceed.
    _set_format(data_dir, b"2")
    Store.open(data_dir).close()
    assert _families(data_dir) >= set(FAMILIES)


def test_a_dir_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="is not empty and holds no trine database"):
        Store.open(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_a_foreign_rocksdb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    foreign = Rdict(str(path))
    foreign[b"k"] = b"v"
    foreign.close()
    del foreign
    with pytest.raises(StorageError, match="was not written by trine"):
        Store.open(path)


def test_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StorageError, match="is not a directory"):
        Store.open(path)


@pytest.fixture
def held_by_another_process(data_dir: Path) -> Iterator[None]:
    Store.open(data_dir).close()
    script = (
        "import sys\n"
        "from rocksdict import Rdict, Options\n"
        "db = Rdict(sys.argv[1], Options(raw_mode=True))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            yield
        finally:
            holder.stdin.close()  # the holder exits at end of input
            holder.wait(10)


@pytest.mark.usefixtures("held_by_another_process")
def test_a_dir_in_use_by_another_process_is_refused(data_dir: Path) -> None:
    with pytest.raises(StorageError) as info:
        Store.open(data_dir)
    assert str(info.value).startswith(f"data dir {data_dir} is in use by another trine engine")


async def test_a_dir_in_use_in_this_process_is_refused(config: EngineConfig) -> None:
    engine = await Engine.open(config)
    try:
        with pytest.raises(StorageError, match="is in use by another trine engine"):
            await Engine.open(config)
    finally:
        await engine.close()


async def test_close_then_reopen_in_the_same_process(config: EngineConfig) -> None:
    for _ in range(3):
        engine = await Engine.open(config)
        await engine.close()
        await engine.close()  # twice is harmless
