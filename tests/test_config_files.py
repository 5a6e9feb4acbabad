"""The example config files for the three-process split boot a working deployment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import EXAMPLES, Cluster, start_order, wait_run

from trine_coordinator.settings import COORDINATOR_ADDR
from trine_core import TARGET
from trine_core.cli import load
from trine_engine.settings import ENGINE_ADDR

SPLIT = EXAMPLES / "split"


def test_example_files_agree_on_the_engine_address() -> None:
    engine, coordinator, gateway = (
        load(["--config", str(SPLIT / f"{name}.toml")], env={})[0]
        for name in ("engine", "coordinator", "gateway")
    )
    assert (engine[TARGET], coordinator[TARGET], gateway[TARGET]) == (
        "engine",
        "coordinator",
        "gateway",
    )
    # engine_addr alone wires the split: the engine plugin says its contracts are served there.
    assert engine[ENGINE_ADDR] == coordinator[ENGINE_ADDR] == gateway[ENGINE_ADDR]
    # and [coordinator] addr wires the gateway to the coordinator's worker registry
    assert coordinator[COORDINATOR_ADDR] == gateway[COORDINATOR_ADDR]
    assert (coordinator.connect, gateway.connect) == ({}, {})


def test_help_lists_every_installed_plugins_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trine_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for flag in ("--target", "--data-dir", "--engine-cancel-grace-ms", "--http-addr"):
        assert flag in out.stdout
    assert "--worker-addr" in out.stdout


def test_split_boots_from_the_example_files(tmp_path: Path) -> None:
    # The files' roles and wiring, on free ports: TRINE_* variables override the files.
    cluster = Cluster(topology="split", workdir=tmp_path)
    engine_addr = f"127.0.0.1:{cluster.engine_port}"
    try:
        for name in ("engine", "coordinator", "gateway"):
            argv = [sys.executable, "-m", "trine_core.cli", "--config", str(SPLIT / f"{name}.toml")]
            env = {"TRINE_ENGINE_ADDR": engine_addr}
            proc = cluster.spawn(f"trine-{name}", argv, **env)
            cluster.runtime.append(proc)
            line = proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
            assert f'"roles": ["{name}"]' in line
        cluster.start_worker()
        with cluster.client() as http:
            run_id = start_order(http)
            assert wait_run(http, run_id)["status"] == "completed"
    finally:
        cluster.close()
