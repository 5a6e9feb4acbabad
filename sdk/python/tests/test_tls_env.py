"""TLS from TRINE_TLS_*: plain without them; a bad file is one ValueError naming the variable and
the file when the worker starts (not a handshake failing on every reconnection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

import pytest

import trine
from trine._tls import client_verify, worker_context

NOT_PEM = "not a certificate\n"


def test_no_variable_means_plain_and_the_default_trust() -> None:
    assert worker_context({}) is None
    assert client_verify({}) is True


def test_a_ca_switches_the_worker_to_verified_tls(tmp_path: Path) -> None:
    # The system's CA bundle stands in for a deployment's CA file.
    bundle = ssl.get_default_verify_paths().cafile
    if bundle is None or not Path(bundle).exists():
        pytest.skip("no system CA bundle to load")
    context = worker_context({"TRINE_TLS_CA": bundle})
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    verify = client_verify({"TRINE_TLS_CA": bundle})
    assert isinstance(verify, ssl.SSLContext)
    assert verify.get_ca_certs()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TRINE_TLS_CA": "{missing}"}, "TRINE_TLS_CA={missing}: no such file"),
        ({"TRINE_TLS_CA": "{junk}"}, "TRINE_TLS_CA={junk} holds no usable PEM certificate"),
        ({"TRINE_TLS_CERT": "{junk}"}, "TRINE_TLS_CERT is set but TRINE_TLS_KEY is not"),
        ({"TRINE_TLS_KEY": "{junk}"}, "TRINE_TLS_KEY is set but TRINE_TLS_CERT is not"),
        (
            {"TRINE_TLS_CERT": "{missing}", "TRINE_TLS_KEY": "{junk}"},
            "TRINE_TLS_CERT={missing}: no such file",
        ),
        (
            {"TRINE_TLS_CERT": "{junk}", "TRINE_TLS_KEY": "{junk}"},
            "TRINE_TLS_CERT={junk} / TRINE_TLS_KEY={junk} cannot be used as a client certificate",
        ),
    ],
)
def test_a_bad_file_names_its_variable(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text(NOT_PEM)
    where = {"missing": str(tmp_path / "missing.pem"), "junk": str(junk)}
    with pytest.raises(ValueError, match="TRINE_TLS_") as caught:
        worker_context({k: v.format(**where) for k, v in env.items()})
    assert needle.format(**where) in str(caught.value)


async def test_a_worker_with_a_bad_ca_fails_at_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRINE_TLS_CA", str(tmp_path / "missing.pem"))
    worker = trine.Worker(address="127.0.0.1:1")

    @worker.function()
    async def hello(ctx: trine.Context) -> str:
        return "hi"

    with pytest.raises(ValueError, match=r"TRINE_TLS_CA=.*missing\.pem: no such file"):
        await worker.serve(handle_signals=False)


async def test_a_plain_worker_dropped_by_a_tls_listener_is_told_to_set_the_ca() -> None:
    async def tls_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)  # the worker's plain HTTP/2 preface
        writer.write(b"\x15\x03\x01\x00\x02\x02\x46")  # a TLS alert, then the door closes
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tls_listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    worker = trine.Worker(address=f"127.0.0.1:{port}")

    @worker.function()
    async def hello(ctx: trine.Context) -> str:
        return "hi"

    hinted = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "set TRINE_TLS_CA" in record.getMessage():
                hinted.set()

    watch = Watch()
    logging.getLogger("trine.worker").addHandler(watch)
    serving = asyncio.create_task(worker.serve(handle_signals=False))
    try:
        await asyncio.wait_for(hinted.wait(), 10)
    finally:
        logging.getLogger("trine.worker").removeHandler(watch)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        server.close()
        await server.wait_closed()
