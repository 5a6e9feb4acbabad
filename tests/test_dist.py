"""The SDK used from another project: the wheels `make dist` builds, installed into a virtualenv of
its own outside this repository, run a worker and a client against a live trine (issue 10).

Once per session: ``make dist DIST=<tmp>/dist`` (what a user runs), then the README's
"Use trine in your project" install block in a fresh project folder under the temp dir: a
``python3.11 -m venv`` and ``pip install`` of the SDK and proto wheels, their third-party
dependencies from the package index as their metadata says (pinned by constraints.txt, as
``make setup`` pins them, so pip's cache usually has them). Then, in each topology, from that
folder and with that virtualenv's Python: a worker and a client written here, and the README's
worker example with its ``client.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
from harness import DEFAULT_TIMEOUT, ROOT, Cluster, LogFile, Proc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

README = (ROOT / "README.md").read_text()
INSTALL_TIMEOUT = 300.0  # the index may be slow; a warm pip cache makes it seconds

WORKER = """\
import pydantic

import trine

worker = trine.Worker()


class Greeting(pydantic.BaseModel):
    name: str
    times: int


def shout(greeting: Greeting) -> str:  # sync: runs in a step thread
    return " ".join([greeting.name.upper() + "!"] * greeting.times)


@worker.function
async def greet(ctx: trine.Context, greeting: Greeting) -> dict[str, str]:
    text = await ctx.step("shout", shout, greeting)
    return {"text": text, "worker_sdk": trine.__file__}


if __name__ == "__main__":
    worker.run()
"""

CLIENT = """\
import asyncio
import json

import trine
from greeter import Greeting, greet


async def main() -> None:
    async with trine.Client() as client:
        result = await client.run(greet, Greeting(name="ada", times=2), timeout=30)
    print(json.dumps({"result": result, "client_sdk": trine.__file__}))


asyncio.run(main())
"""

# What a project's virtualenv holds, as JSON: its distributions, and which of the given import
# names it can import.
PROBE = """\
import importlib.metadata, importlib.util, json, sys
print(json.dumps({
    "dists": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "importable": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None],
}))
"""


def readme_block(marker: str, lang: str) -> str:
    return README.split(f"<!-- {marker} -->", 1)[1].split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what ties it to this checkout or an outer make."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TRINE_")}
    env.update(extra)
    return env


class Wheels:
    """The wheels (and sdists) of one `make dist`, with their metadata."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = sorted(folder.glob("*.whl"))
        self.meta: dict[str, Message] = {}
        self.packages: dict[str, set[str]] = {}  # distribution -> its top-level import names
        for path in self.files:
            with zipfile.ZipFile(path) as wheel:
                names = wheel.namelist()
                metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
                message = HeaderParser().parsestr(wheel.read(metadata).decode())
            name = canonicalize_name(message["Name"])
            self.meta[name] = message
            self.packages[name] = {
                n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n
            }

    def version(self, name: str) -> str:
        return str(self.meta[canonicalize_name(name)]["Version"])

    def requires(self, name: str) -> list[Requirement]:
        return [Requirement(r) for r in self.meta[canonicalize_name(name)].get_all("Requires-Dist")]

    def closure(self, name: str) -> set[str]:
        """``name`` and every trine distribution it requires (not extras), transitively."""
        seen: set[str] = set()
        todo = [canonicalize_name(name)]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for req in self.requires(current):
                if req.name.startswith("trine") and req.marker is None:
                    todo.append(canonicalize_name(req.name))
        return seen


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """``make dist`` into a folder of the session's temp dir."""
    dist = tmp_path_factory.mktemp("trine") / "dist"
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "dist", f"DIST={dist}"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Wheels(dist)


@pytest.fixture(scope="session")
def project(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder outside the repository, set up as the README says: ``.venv`` holding the
    SDK from the wheels, a worker and a client of our own, and the README's worker and client."""
    folder = tmp_path_factory.mktemp("my-project")
    assert not folder.resolve().is_relative_to(ROOT)
    install = readme_block("sdk-install", "bash")
    env = clean_env(TRINE=str(wheels.folder.parent), PIP_CONSTRAINT=str(ROOT / "constraints.txt"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", install],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"{install}\n{result.stdout}\n{result.stderr}"
    (folder / "greeter.py").write_text(WORKER)
    (folder / "greet.py").write_text(CLIENT)
    readme_worker = README.split("## Writing a worker", 1)[1].split("```python\n", 1)[1]
    (folder / "worker.py").write_text(readme_worker.split("```", 1)[0])
    (folder / "client.py").write_text(readme_block("client-script", "python"))
    return folder


def python(project: Path) -> str:
    return str(project / ".venv" / "bin" / "python")


def test_every_trine_requirement_is_a_wheel_of_the_same_dist(wheels: Wheels) -> None:
    """``pip install dist/*.whl`` needs nothing of trine's from an index: each trine-* package a
    wheel requires (extras included) is a wheel beside it, at a version the pin accepts."""
    assert {"trine", "trine-sdk", "trine-proto"} <= set(wheels.meta)
    for name in wheels.meta:
        for req in wheels.requires(name):
            if req.name.startswith("trine"):
                assert canonicalize_name(req.name) in wheels.meta, f"{name} requires {req}"
                assert req.specifier.contains(wheels.version(req.name)), f"{name} requires {req}"
    # Every distribution with code has its sdist; the meta-package is a wheel alone.
    sdists = {p.name for p in wheels.folder.glob("*.tar.gz")}
    for name in set(wheels.meta) - {"trine"}:
        assert f"{name.replace('-', '_')}-{wheels.version(name)}.tar.gz" in sdists


def test_the_sdk_stands_alone(wheels: Wheels, project: Path) -> None:
    """The project's virtualenv has the SDK and proto, and none of the runtime."""
    sdk = wheels.closure("trine-sdk")
    runtime = wheels.closure("trine") - sdk
    assert sdk == {"trine-sdk", "trine-proto"}
    assert {"trine", "trine-core", "trine-engine", "trine-gateway"} <= runtime
    runtime_modules = set().union(*(wheels.packages[d] for d in runtime))
    assert "trine_engine" in runtime_modules
    result = subprocess.run(
        [python(project), "-c", PROBE, "trine", "trine_proto", *sorted(runtime_modules)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=True,
    )
    probe = json.loads(result.stdout)
    dists = {canonicalize_name(d) for d in probe["dists"]}
    assert sdk <= dists
    assert not dists & runtime, f"runtime distributions in the SDK's venv: {dists & runtime}"
    assert probe["importable"] == ["trine", "trine_proto"]
    # Every dependency the SDK's metadata declares was installed from the index.
    for name in sdk:
        for req in wheels.requires(name):
            if req.marker is None:
                assert canonicalize_name(req.name) in dists, req


def start_worker(cluster: Cluster, project: Path, script: str) -> Proc:
    """Run ``script`` from the project folder with its venv's Python, until it registered."""
    log = cluster.workdir / f"{script}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [python(project), script],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(
                **{k: v for k, v in cluster.env(worker=True).items() if k.startswith("TRINE_")}
            ),
        )
    proc = Proc(script, popen, LogFile(log))
    cluster.procs.append(proc)  # killed at teardown
    cluster.wait_registered(proc)
    return proc


def run_client(cluster: Cluster, project: Path, script: str) -> str:
    result = subprocess.run(
        [python(project), script],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT * 2,
        env=clean_env(TRINE_URL=cluster.url),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_worker_and_a_client_from_another_project(cluster: Cluster, project: Path) -> None:
    cluster.start()
    start_worker(cluster, project, "greeter.py")
    out = json.loads(run_client(cluster, project, "greet.py"))
    assert out["result"]["text"] == "ADA! ADA!"
    venv = project / ".venv"
    assert Path(out["result"]["worker_sdk"]).is_relative_to(venv), out  # not this checkout's
    assert Path(out["client_sdk"]).is_relative_to(venv), out

    if cluster.topology != "all":
        return  # the README's example is about its text, not the topology: checked once
    # The README's worker and client.py, as written there.
    start_worker(cluster, project, "worker.py")
    printed = run_client(cluster, project, "client.py")
    assert "txn-o-1" in printed, printed
