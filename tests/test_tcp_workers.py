"""Workers over the ``tcp://`` worker transport, end to end in both topologies (in ``split`` the
worker port speaks TLS and workers present their certificate, as on ``grpc://``): runs complete,
the worker is listed under its coordinator's ``tcp://`` name, the crash tests hold, and a worker
given the wrong scheme is told so."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import test_crashes
from harness import EXAMPLES, Cluster, Proc, runtime_tls, start_order, wait_run, worker_tls

from trine._tcp_transport import TcpConnector
from trine._tls import worker_context
from trine.transport import ConnectOptions
from trine_proto import frames

ORDER_WORKER = [sys.executable, str(EXAMPLES / "order_worker.py")]


def test_runs_complete_over_tcp_and_the_worker_is_listed_with_its_coordinator(
    cluster: Cluster,
) -> None:
    cluster.worker_scheme = "tcp"
    cluster.start()
    coordinator(cluster).log.wait_for(
        lambda line: "listening for workers" in line and cluster.worker_addr in line
    )
    cluster.start_worker()
    with cluster.client() as http:
        runs = [wait_run(http, start_order(http, order_id=str(i))) for i in range(5)]
        assert [run["status"] for run in runs] == ["completed"] * 5
        workers = http.get("/v1/workers").json()["workers"]
    assert [w["coordinator"] for w in workers] == [cluster.worker_addr]
    assert cluster.worker_addr.startswith("tcp://")


def test_kill9_worker_mid_step_over_tcp_reruns_only_the_unacked_step(cluster: Cluster) -> None:
    cluster.worker_scheme = "tcp"
    test_crashes.test_kill9_worker_mid_step_second_worker_finishes_only_unacked_step_reruns(cluster)


def test_kill9_runtime_mid_flight_over_tcp_loses_nothing(cluster: Cluster) -> None:
    cluster.worker_scheme = "tcp"
    test_crashes.test_kill9_runtime_mid_flight_loses_nothing_and_repeats_no_acked_step(cluster)


def test_a_worker_given_the_wrong_scheme_is_told_which_to_use(cluster: Cluster) -> None:
    """A grpc:// worker at a tcp:// port, and the other way round: neither registers, each says
    what to change, and the tcp:// coordinator says what it refused."""
    cluster.worker_scheme = "tcp"
    cluster.start()
    plain = f"127.0.0.1:{cluster.worker_port}"  # grpc://, the default
    grpc_worker = cluster.spawn("grpc-worker", ORDER_WORKER, TRINE_WORKER_ADDR=plain)
    line = grpc_worker.log.wait_for(lambda text: "cannot reach the coordinator" in text)
    assert "if its worker port is tcp://, use that" in line, line
    refused = coordinator(cluster).log.wait_for(lambda text: "refused a connection" in text)
    assert "trine worker preamble" in refused, refused
    grpc_worker.kill9()

    other = Cluster(topology=cluster.topology, workdir=cluster.workdir / "grpc")
    other.workdir.mkdir()
    try:
        other.start()
        tcp_worker = other.spawn(
            "tcp-worker", ORDER_WORKER, TRINE_WORKER_ADDR=f"tcp://{other.worker_addr}"
        )
        line = tcp_worker.log.wait_for(lambda text: "cannot reach the coordinator" in text)
        assert "if its worker port is grpc://, use that" in line, line
    finally:
        other.close()


def test_over_tls_both_ends_agree_on_the_tcp_wire_not_http2(cluster: Cluster) -> None:
    """ALPN names the wire a TLS connection carries: the tcp:// port and the SDK's tcp://
    connector must agree on ``trine-worker/1``, never on ``h2`` (which the [tls] and TRINE_TLS_*
    contexts offer for gRPC), or a TLS-terminating proxy between them would take the connection
    for HTTP/2."""
    cluster.worker_scheme = "tcp"
    cluster.start(**runtime_tls(), TRINE_GATEWAY_HTTPS="false")  # split has them already
    address = cluster.worker_addr

    async def agreed() -> list[str | None]:
        host, port = address.removeprefix("tcp://").split(":")
        offering_both = worker_context(worker_tls())
        assert offering_both is not None
        offering_both.set_alpn_protocols(["h2", frames.ALPN])
        _, writer = await asyncio.open_connection(
            host, int(port), ssl=offering_both, server_hostname=host
        )
        try:
            server_chose = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        options = ConnectOptions(
            metadata={}, max_message_bytes=1 << 20, tls=worker_context(worker_tls())
        )
        stream = await TcpConnector().connect(address, options)
        try:
            sdk_agreed = stream._writer.get_extra_info("ssl_object").selected_alpn_protocol()
        finally:
            await stream.close()
        return [server_chose, sdk_agreed]

    assert asyncio.run(agreed()) == [frames.ALPN, frames.ALPN]


def coordinator(cluster: Cluster) -> Proc:
    """The process that holds the coordinator: ``trine-all`` or ``trine-coordinator``."""
    return next(p for p in cluster.runtime if p.name in ("trine-all", "trine-coordinator"))
