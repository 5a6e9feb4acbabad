"""A limit at every edge (issue 14), in both topologies, against real processes:

- a 300 MB HTTP header is refused early (431, or the socket closed under the sender): the
  gateway's memory grows by a few MB, not hundreds, and a run started meanwhile completes (the
  worker kept its heartbeat);
- 20,000 idle and half-sent connections are closed by ``[gateway] read_timeout_s``: every one
  of them, each with a 408, not before the timeout, and the gateway serves meanwhile (as many
  are open at once as both processes' descriptor limits leave room for, the rest opened as the
  first close: see the test's docstring);
- a 400 MB ``Register`` on the coordinator's worker port is refused (``RESOURCE_EXHAUSTED``)
  from its length prefix: the coordinator's memory stays bounded and the registered worker
  still serves;
- signals to a run that does not wait stop at ``[engine] max_kept_signals`` with a 409
  ``kept_signals_full`` naming the setting, the run's view lists what it keeps (count and bytes),
  and every accepted one is in the run's events;
- an SSE client that stops reading a run with a long history leaves the gateway's memory
  bounded (in ``split`` the gateway reads the engine's stream only as the client consumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import selectors
import socket
import ssl
import struct
import time

from grpc_channel import ClosingChannel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from harness import Cluster, dev_certs, send_signal, sse_events, start_order, wait_run

from trine_proto.codec import GrpcCodec
from trine_proto.trine.v1 import CoordinatorMessage, WorkerMessage

MB = 1 << 20
RSS_GROWTH_BOUND = 64 * MB
"""What one refused huge message may cost a process (measured: a few MB)."""


def rss(pid: int) -> int:
    """The process's resident set size, in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def http_pid(cluster: Cluster) -> int:
    target = "all" if cluster.topology == "all" else "gateway"
    return cluster.runtime_proc(target).popen.pid


def worker_port_pid(cluster: Cluster) -> int:
    target = "all" if cluster.topology == "all" else "coordinator"
    return cluster.runtime_proc(target).popen.pid


def test_a_huge_header_is_refused_early_and_workers_keep_their_heartbeat(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker()
    pid = http_pid(cluster)
    with cluster.client() as http:
        run_id = start_order(http)  # runs while the header is refused
        before = rss(pid)
        sent = 0
        with socket.create_connection(("127.0.0.1", cluster.http_port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            chunk = b"a" * MB
            with contextlib.suppress(ConnectionError):
                while sent < 300 * MB:
                    sock.sendall(chunk)
                    sent += len(chunk)
            answer = b""
            with contextlib.suppress(ConnectionError):
                sock.settimeout(10)
                answer = sock.recv(4096)
        grown = rss(pid) - before
        assert sent < 300 * MB, "the gateway read the whole 300 MB header"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert grown < RSS_GROWTH_BOUND, f"the gateway grew by {grown / MB:.0f} MB"
        assert wait_run(http, run_id)["status"] == "completed"
        assert http.get("/healthz").status_code == 200
        workers = http.get("/v1/workers").json()["workers"]
        assert len(workers) == 1
    log = "\n".join(cluster.procs[-1].log.lines())
    assert "reconnect" not in log.lower(), "the worker lost its connection"


IDLE = 20_000
"""The issue's figure: 20,000 idle or half-sent connections, each closed by the read timeout."""
READ_TIMEOUT_S = 12.0
"""The gateway accepts 1,000 to 3,000 connections a second here (the 2 cores are shared), so it
holds about 15,000 at once before the first are timed out (16 s held no more, and took longer);
the whole test takes about 30 s per topology."""
HEADROOM = 200
"""Descriptors left free in each process beside the idle connections: the gateway's own files
(RocksDB opens tables as it flushes, in ``all``), a request served meanwhile, the test's pipes."""
BATCH = 500
"""Connections opened at a time, each batch connected before the next."""
BACKLOG = 2_048
"""The gateway's listen backlog: connections it has not accepted yet are kept under half of it,
so that no SYN is dropped and retried a second later."""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_room(pid: int) -> int:
    """How many more descriptors ``pid`` may open, with its soft limit raised to its hard one
    (any process may do that; raising the hard limit needs ``CAP_SYS_RESOURCE``)."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    return hard - open_fds(pid)


def _connect(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port``, once connected; every other one has sent half a
    request head."""
    batch: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            batch.append(sock)
            sock.setblocking(False)
            assert sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
        with selectors.DefaultSelector() as selector:
            for sock in batch:
                selector.register(sock, selectors.EVENT_WRITE)
            connected, deadline = 0, time.monotonic() + 30
            while connected < count and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1):
                    selector.unregister(key.fileobj)
                    connected += 1
        assert connected == count, f"{count - connected} of {count} connects hung"
        for index, sock in enumerate(batch):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            if index % 2:
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ha")
    except BaseException:
        for sock in batch:
            sock.close()
        raise
    return batch


def test_idle_and_half_sent_connections_are_closed_by_the_read_timeout(cluster: Cluster) -> None:
    """20,000 connections that send nothing or half a request head are each answered 408 and
    closed by ``[gateway] read_timeout_s``, not before it, while the gateway goes on serving.

    Each end of a connection is a file descriptor, and on the reference machine (a container)
    ``RLIMIT_NOFILE`` is 20,000, soft and hard, for every process, root included: its capability
    set lacks ``CAP_SYS_RESOURCE`` (CapEff 0x1fffeffffff, bit 24 clear), so neither
    ``setrlimit`` nor ``prlimit`` may raise a hard limit. The gateway's process cannot hold
    20,000 connections beside its own descriptors (the listening socket, epoll, RocksDB's files
    in ``all``, gRPC channels in ``split``), nor this test their client ends beside its own. So
    the test keeps at most as many open as both have room for (the limit minus what each holds,
    minus :data:`HEADROOM`: about 19,700 here) and opens the rest as the first are closed; as
    the gateway accepts them at its pace, it held 15,000 to 16,000 at once in this test's runs.
    ``[gateway] max_connections`` is raised above the count so that the cap refuses none (it is
    what keeps a real gateway's connections below its descriptor limit)."""
    cluster.start(
        TRINE_GATEWAY_READ_TIMEOUT_S=str(READ_TIMEOUT_S),
        TRINE_GATEWAY_MAX_CONNECTIONS=str(IDLE + 1_000),
    )
    pid = http_pid(cluster)
    room = min(fd_room(pid), fd_room(os.getpid())) - HEADROOM
    assert room >= IDLE // 2, f"room for {room} connections only"
    base = open_fds(pid)
    opened_at: dict[socket.socket, float] = {}
    selector = selectors.DefaultSelector()
    opened = closed = answered = held = 0
    soonest, served = float("inf"), False
    began = time.monotonic()
    deadline = began + 2 * READ_TIMEOUT_S + 60
    try:
        while closed < IDLE and time.monotonic() < deadline:
            more = min(BATCH, IDLE - opened, room - (opened - closed))
            if opened < IDLE:
                holds = open_fds(pid) - base  # what the gateway holds now
                held = max(held, holds)
                if opened - closed - holds > BACKLOG // 2:  # connected, not accepted yet
                    more = 0  # let the gateway accept them first
            if more > 0:
                at = time.monotonic()  # before connecting: the gateway's timer starts later
                for sock in _connect(cluster.http_port, more):
                    opened_at[sock] = at
                    selector.register(sock, selectors.EVENT_READ)
                opened += more
            if opened == IDLE and not served:
                held = max(held, open_fds(pid) - base)
                with cluster.client() as http:  # served meanwhile, beside thousands of them
                    served = http.get("/healthz").status_code == 200
            for key, _ in selector.select(timeout=0 if more > 0 else 0.05):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if data.startswith(b"HTTP/1.1 408 "):
                    answered += 1
                    soonest = min(soonest, time.monotonic() - opened_at[sock])
                if not data:  # closed by the gateway
                    selector.unregister(sock)
                    sock.close()
                    closed += 1
        took = time.monotonic() - began
        assert closed == IDLE, f"{IDLE - closed} of {IDLE} connections open after {took:.1f} s"
        assert served, "a request sent while they were open was not answered 200"
        assert answered == IDLE  # each was told 408 request_timeout before the close
        assert soonest >= READ_TIMEOUT_S * 0.99, f"one was closed after {soonest:.2f} s"
        assert held >= IDLE // 4, f"the gateway held at most {held} connections at once"
    finally:
        selector.close()
        for sock in opened_at:
            sock.close()
    with cluster.client() as http:
        assert http.get("/healthz").status_code == 200
    assert open_fds(pid) - base < HEADROOM  # every connection's descriptor is back


def _worker_ssl(cluster: Cluster) -> ssl.SSLContext | None:
    if cluster.topology != "split":
        return None
    certs = dev_certs()
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client), str(certs.client_key))
    context.set_alpn_protocols(["h2"])
    return context


async def _send_huge_register(cluster: Cluster, size: int) -> tuple[int, GRPCError | None]:
    """Announce a ``size``-byte WorkerMessage and stream its body in 1 MB chunks; how much was
    sent before the coordinator answered, and its answer."""
    tls = _worker_ssl(cluster)
    channel = ClosingChannel("127.0.0.1", cluster.worker_port, codec=GrpcCodec(), ssl=tls)
    sent = 0
    try:
        async with channel.request(
            "/trine.v1.WorkerService/Connect",
            Cardinality.STREAM_STREAM,
            WorkerMessage,
            CoordinatorMessage,
        ) as stream:
            await stream.send_request()
            raw = stream._stream  # grpclib's HTTP/2 stream: the message is framed by hand

            async def body() -> None:
                nonlocal sent
                await raw.send_data(struct.pack(">?I", False, size))
                chunk = b"\0" * MB
                while sent < size:
                    await raw.send_data(chunk)
                    sent += len(chunk)

            sending = asyncio.create_task(body())
            try:
                await asyncio.wait_for(stream.recv_message(), 30)
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
    except GRPCError as exc:  # from the read, or from the stream's end
        return sent, exc
    except StreamTerminatedError:
        return sent, None
    finally:
        await channel.closed()
    return sent, None


def test_a_huge_grpc_message_on_the_worker_port_is_refused_early(cluster: Cluster) -> None:
    cluster.start()
    worker = cluster.start_worker()
    pid = worker_port_pid(cluster)
    before = rss(pid)
    sent, error = asyncio.run(_send_huge_register(cluster, 400 * MB))
    grown = rss(pid) - before
    assert error is not None
    assert error.status is Status.RESOURCE_EXHAUSTED, error
    assert "coordinator.max_message_bytes" in (error.message or "")
    assert sent < 400 * MB
    assert grown < RSS_GROWTH_BOUND, f"the coordinator grew by {grown / MB:.0f} MB"
    with cluster.client() as http:
        assert wait_run(http, start_order(http))["status"] == "completed"
    assert worker.alive


KEPT = 5


def test_kept_signals_stop_at_the_cap_with_a_409_and_nothing_lost(cluster: Cluster) -> None:
    cluster.start(TRINE_ENGINE_MAX_KEPT_SIGNALS=str(KEPT))
    cluster.start_worker().kill9()  # `order` is known; with no worker its run waits for nothing
    with cluster.client() as http:
        run_id = start_order(http)
        payload = {"blob": "x" * 1000}
        for n in range(KEPT):
            response = send_signal(http, run_id, "tick" if n else "first", {**payload, "n": n})
            assert response.status_code == 202, response.text  # kept, not delivered
            assert response.json()["delivered"] is False
        refused = send_signal(http, run_id, "tick", {**payload, "n": KEPT})
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "kept_signals_full"
        assert error["details"]["limit"] == "engine.max_kept_signals"
        assert error["details"]["kept"] == KEPT
        kept = http.get(f"/v1/runs/{run_id}").json()["kept_signals"]  # the run's view
        assert [(k["name"], k["count"]) for k in kept] == [("first", 1), ("tick", KEPT - 1)]
        assert kept[0]["bytes"] > 1000
        assert kept[1]["bytes"] > 1000 * (KEPT - 1)
        assert error["details"]["kept_bytes"] == kept[0]["bytes"] + kept[1]["bytes"]
        received = [
            e["data"]["data"]["payload"]["n"]
            for e in sse_events(http, run_id, limit=1 + KEPT)
            if e["event"] == "signal.received"
        ]
        assert received == list(range(KEPT))


HISTORY_EVENTS = 300
CLIENTS = 3


def test_sse_clients_that_do_not_read_leave_the_gateway_bounded(cluster: Cluster) -> None:
    """A run with ~90 MB of history (kept signals of 300 KB, each a signal.received event) and
    three SSE clients that read nothing: before, each cost the gateway the whole history."""
    cluster.start(
        TRINE_ENGINE_MAX_KEPT_SIGNALS=str(HISTORY_EVENTS),
        TRINE_ENGINE_MAX_KEPT_SIGNAL_BYTES=str(1 << 30),
    )
    cluster.start_worker().kill9()
    pid = http_pid(cluster)
    with cluster.client() as http:
        run_id = start_order(http)
        blob = "x" * 300_000
        for n in range(HISTORY_EVENTS):
            assert send_signal(http, run_id, "tick", {"n": n, "blob": blob}).status_code == 202
        before = rss(pid)
        socks = []
        try:
            for _ in range(CLIENTS):
                sock = socket.create_connection(("127.0.0.1", cluster.http_port))
                request = f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                sock.sendall(request.encode())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                socks.append(sock)
            # The gateway fills what it may, then waits: poll its memory until it settles.
            settled, previous = 0, -1
            deadline = time.monotonic() + 60
            while settled < 3 and time.monotonic() < deadline:
                time.sleep(0.5)  # polling memory: no event says "nothing more is read"
                now = rss(pid)
                settled = settled + 1 if abs(now - previous) < MB else 0
                previous = now
            grown = rss(pid) - before
            assert http.get("/healthz").status_code == 200  # still serving meanwhile
        finally:
            for sock in socks:
                sock.close()
    history = HISTORY_EVENTS * 300_000
    assert grown < history // 2, (
        f"{CLIENTS} non-reading clients grew the gateway {grown / MB:.0f} MB"
    )
