"""``trine certs dev DIR``: the files, their modes, no overwrite without --force, and
certificates that work: mutual TLS with trine_core.tls's contexts, host names checked, another
CA's certificate refused."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trine_admin.certs import FILES, DevCerts, write_dev_certs
from trine_core import TLS_CA, TLS_CERT, TLS_KEY, Settings
from trine_core.cli import main as trine_main
from trine_core.tls import client_context, server_context

REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, TimeoutError)
"""A client refused after its handshake (TLS 1.3 sends the verdict on its certificate later)."""


def tls_settings(cert: Path, key: Path, ca: Path) -> Settings:
    return Settings({TLS_CERT: str(cert), TLS_KEY: str(key), TLS_CA: str(ca)})


def test_writes_the_files_keys_private_and_prints_how_to_use_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "certs"
    assert trine_main(["certs", "dev", str(target), "--host", "trine.internal"]) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    for name in FILES:
        mode = stat.S_IMODE((target / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), name
    out = capsys.readouterr().out
    assert f"--tls-cert {target / 'server.pem'}" in out
    assert f"TRINE_TLS_CA={target / 'ca.pem'}" in out
    assert f"TRINE_TLS_CERT={target / 'client.pem'}" in out

    server = x509.load_pem_x509_certificate((target / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "trine.internal"} <= set(names.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    purposes = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Every role serves with it and dials the others with it.
    assert set(purposes) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    client = x509.load_pem_x509_certificate((target / "client.pem").read_bytes())
    purposes = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_dev_certs(tmp_path)
    ca = first.ca.read_bytes()
    assert trine_main(["certs", "dev", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ca.pem" in err
    assert "--force" in err
    assert first.ca.read_bytes() == ca  # left alone
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(FileExistsError, match=r"server\.pem"):  # one file left is enough
        write_dev_certs(tmp_path)
    assert trine_main(["certs", "dev", str(tmp_path), "--force"]) == 0
    assert first.ca.read_bytes() != ca
    assert stat.S_IMODE(first.ca_key.stat().st_mode) == 0o600


async def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> str:
    """Connect ``client`` to a loopback server of ``server``; the protocol ALPN chose."""
    accepted: asyncio.Queue[str] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the client's byte: its certificate was accepted
        await accepted.put(writer.get_extra_info("ssl_object").selected_alpn_protocol())
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=host
        )
        writer.write(b"x")
        await writer.drain()
        protocol = await asyncio.wait_for(accepted.get(), 10)
        writer.close()
        return protocol
    finally:
        listener.close()
        await listener.wait_closed()


async def test_roles_and_workers_talk_mutual_tls_with_them(tmp_path: Path) -> None:
    certs = write_dev_certs(tmp_path / "ours")
    role = tls_settings(certs.server, certs.server_key, certs.ca)
    worker = tls_settings(certs.client, certs.client_key, certs.ca)
    role_port = server_context(role)
    # The coordinator's worker port ([coordinator] worker_ca = workers-ca.pem).
    worker_port = server_context(role, ssl.CERT_REQUIRED, certs.workers_ca)
    role_dialing, worker_dialing = client_context(role), client_context(worker)
    assert role_port is not None
    assert worker_port is not None
    assert role_dialing is not None
    assert worker_dialing is not None
    for host in ("localhost", "127.0.0.1"):
        assert await handshake(role_port, role_dialing, host) == "h2"
        assert await handshake(worker_port, worker_dialing, host) == "h2"
    # A worker's certificate opens no role's port (its CA is not the roles').
    with pytest.raises(REFUSED):
        await handshake(role_port, worker_dialing, "localhost")


async def test_another_ca_is_refused_both_ways(tmp_path: Path) -> None:
    ours, theirs = write_dev_certs(tmp_path / "ours"), write_dev_certs(tmp_path / "theirs")
    listener = server_context(tls_settings(ours.server, ours.server_key, ours.ca))
    assert listener is not None
    # A client whose certificate another CA signed (it trusts our CA: only its own cert is bad).
    stranger = client_context(tls_settings(theirs.client, theirs.client_key, ours.ca))
    assert stranger is not None
    with pytest.raises(REFUSED):
        await handshake(listener, stranger, "localhost")
    # A server whose certificate another CA signed is not trusted by our clients.
    impostor = server_context(tls_settings(theirs.server, theirs.server_key, theirs.ca))
    ours_dialing = client_context(tls_settings(ours.client, ours.client_key, ours.ca))
    assert impostor is not None
    assert ours_dialing is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(impostor, ours_dialing, "localhost")


async def test_a_name_the_certificate_does_not_carry_is_refused(tmp_path: Path) -> None:
    certs: DevCerts = write_dev_certs(tmp_path)
    listener = server_context(tls_settings(certs.server, certs.server_key, certs.ca))
    dialer = client_context(tls_settings(certs.client, certs.client_key, certs.ca))
    assert listener is not None
    assert dialer is not None
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await handshake(listener, dialer, "elsewhere.example")
