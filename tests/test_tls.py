"""TLS everywhere and mutual TLS between roles (issue 13): the split topology's gRPC ports refuse
whoever cannot show a certificate of the deployment's CA; the gateway serves HTTPS that
``trine.Client`` verifies with ``TRINE_TLS_CA``; a role's port on the network needs mutual TLS.

The split cluster of every e2e test already runs with mutual TLS between its processes and TLS to
its workers (tests/harness.py), so the whole suite is the positive half; these are the refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grpc_channel import ClosingChannel
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from harness import ORDER, Cluster, dev_certs, runtime_tls, start_order, wait_run, worker_tls

import trine
from trine_admin.certs import DevCerts, write_dev_certs
from trine_core.testing import free_port
from trine_proto.codec import GrpcCodec
from trine_proto.trine.v1 import (
    BackendStub,
    ListFunctionsRequest,
    ListWorkersRequest,
    WorkerRegistryStub,
)

REFUSED = (OSError, ssl.SSLError, StreamTerminatedError, ProtocolError, GRPCError, TimeoutError)
"""How a refused TLS client fails: the handshake, or the first read after it (TLS 1.3 sends
the server's verdict on the client certificate after the client considers itself connected)."""


def context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A gRPC client's TLS context: verify against ``ca`` (None: verify nothing), present
    ``cert``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(ca)
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def call(port: int, tls: ssl.SSLContext | None, registry: bool = False) -> object:
    """One read-only call on the port: list the functions (engine) or the workers (registry)."""
    channel = ClosingChannel("127.0.0.1", port, codec=GrpcCodec(), ssl=tls)
    try:
        if registry:
            return await WorkerRegistryStub(channel).list_workers(ListWorkersRequest(), timeout=10)
        return await BackendStub(channel).list_functions(ListFunctionsRequest(), timeout=10)
    finally:
        await channel.closed()


@contextlib.contextmanager
def dropped_sockets_collected() -> Iterator[None]:
    """grpclib leaves the socket of a connection that failed its handshake for the garbage
    collector: collected on leaving, so its ResourceWarning is neither this test's failure nor,
    collected later, the next test's."""
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def refused(port: int, tls: ssl.SSLContext | None, registry: bool) -> bool:
    """Whether the call fails."""
    with dropped_sockets_collected():
        try:
            asyncio.run(call(port, tls, registry))
        except REFUSED:
            return True
    return False


@pytest.fixture
def split(cluster: Cluster) -> Cluster:
    if cluster.topology != "split":
        pytest.skip("mutual TLS between processes: split topology only")
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """A second CA and its certificates: trusted by nobody in the cluster."""
    return write_dev_certs(tmp_path_factory.mktemp("other-ca"))


@pytest.mark.parametrize("port_of", ["engine", "coordinator"])
def test_a_role_port_refuses_clients_without_a_certificate_of_its_ca(
    split: Cluster, other_ca: DevCerts, port_of: str
) -> None:
    certs = dev_certs()
    port = split.engine_port if port_of == "engine" else split.coordinator_port
    registry = port_of == "coordinator"
    attempts = {
        "plain (no TLS)": None,
        "TLS, no client certificate": context(certs.ca),
        "a certificate of another CA": context(certs.ca, other_ca.server, other_ca.server_key),
        "another CA's client certificate": context(None, other_ca.client, other_ca.client_key),
        "a worker's client certificate": context(certs.ca, certs.client, certs.client_key),
    }
    for what, tls in attempts.items():
        assert refused(port, tls, registry), f"the {port_of} port answered a client with {what}"
    # The deployment's own certificate is let in (the same call: the refusals are the TLS).
    asyncio.run(call(port, context(certs.ca, certs.server, certs.server_key), registry))


def test_the_engine_port_serves_a_certificate_clients_verify(split: Cluster) -> None:
    """A client that trusts only another CA refuses the engine: the server is authenticated."""
    elsewhere = write_dev_certs(split.workdir / "elsewhere")
    tls = context(elsewhere.ca, elsewhere.client, elsewhere.client_key)
    with dropped_sockets_collected(), pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(call(split.engine_port, tls))


def test_workers_need_a_client_certificate_when_the_coordinator_requires_one(
    cluster: Cluster,
) -> None:
    if cluster.topology != "split":
        pytest.skip("TLS to workers: the split topology's")
    cluster.start(TRINE_COORDINATOR_REQUIRE_WORKER_CERTS="true")
    anonymous = cluster.spawn(
        "anonymous-worker",
        [sys.executable, str(Path("examples/order_worker.py"))],
        TRINE_TLS_CERT="",
        TRINE_TLS_KEY="",
    )
    anonymous.log.wait_for(lambda line: "cannot reach the coordinator" in line, anonymous.popen)
    assert not any("registered" in line.lower() for line in anonymous.log.lines())
    worker = cluster.start_worker()  # the harness gives workers the client certificate
    assert worker.alive
    with cluster.client() as http:
        run_id = start_order(http)
        assert wait_run(http, run_id)["status"] == "completed"
    assert not any("registered" in line.lower() for line in anonymous.log.lines())


def test_https_gateway_with_trine_client_and_tls_ca(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = dev_certs()
    cluster.start(**runtime_tls(), TRINE_GATEWAY_HTTPS="true")
    cluster.start_worker(**worker_tls())
    url = f"https://127.0.0.1:{cluster.http_port}"
    gateway = cluster.runtime_proc("gateway" if cluster.topology == "split" else "all")
    assert any(url in line for line in gateway.log.lines())  # "gateway listening" says https

    async def with_ca() -> dict[str, object]:
        async with trine.Client(url) as client:
            run = await client.start("order", ORDER)
            return await client.wait(run["id"], timeout=30)

    monkeypatch.setenv("TRINE_TLS_CA", str(certs.ca))
    assert asyncio.run(with_ca())["status"] == "completed"

    # Without the CA the gateway's certificate is not trusted; plain HTTP gets no answer.
    monkeypatch.delenv("TRINE_TLS_CA")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(with_ca())
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{cluster.http_port}/healthz", timeout=10)


@pytest.mark.parametrize(
    ("target", "variable", "what"),
    [
        ("engine", "TRINE_ENGINE_ADDR", "engine"),
        ("coordinator", "TRINE_COORDINATOR_ADDR", "worker_registry"),
    ],
)
def test_a_role_port_on_the_network_needs_mutual_tls_or_insecure(
    tmp_path: Path, target: str, variable: str, what: str
) -> None:
    cluster = Cluster(topology="all", workdir=tmp_path)  # no TLS in the environment
    address = f"0.0.0.0:{free_port()}"
    argv = [sys.executable, "-m", "trine_core.cli", f"--target={target}"]
    try:
        out = subprocess.run(
            argv, env=cluster.env(**{variable: address}), capture_output=True, text=True, timeout=60
        )
        last = one_line_error(out)
        assert f"refusing to listen on {address}" in last
        assert what in last
        assert "--insecure" in last
        assert "--tls-ca" in last
        # --insecure is the explicit way out; so is mutual TLS.
        for extra, env in (
            (["--insecure"], {}),
            ([], runtime_tls()),
        ):
            proc = cluster.spawn(f"trine-{target}", [*argv, *extra], **{variable: address}, **env)
            proc.log.wait_for(lambda line: "trine started" in line, proc.popen)
            proc.terminate()
    finally:
        cluster.close()


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The boot error: exit 2, no traceback, the last line ``trine: error: ...``."""
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("trine: error: "), out.stderr
    return last


def test_a_bad_certificate_file_is_one_line_at_boot(tmp_path: Path) -> None:
    certs = dev_certs()
    cluster = Cluster(topology="all", workdir=tmp_path)
    argv = [sys.executable, "-m", "trine_core.cli", "--target=engine"]
    cases = {
        "missing": (dict(TRINE_TLS_CERT=str(tmp_path / "nope.pem")), "does not exist"),
        "mismatched": (dict(TRINE_TLS_KEY=str(certs.client_key)), "does not match"),
        "not a CA": (dict(TRINE_TLS_CA=str(certs.server_key)), "holds no PEM certificate"),
    }
    for name, (override, needle) in cases.items():
        env = cluster.env(**{**runtime_tls(), **override})
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert needle in one_line_error(out), name
        assert not (cluster.data_dir / "CURRENT").exists(), f"{name}: the database was opened"
