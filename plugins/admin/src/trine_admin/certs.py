"""``trine certs dev DIR``: a development CA and the certificates a whole deployment needs.

One server certificate serves every role (gateway HTTPS, the engine's and the coordinator's gRPC
ports) and is also each role's client certificate when it dials another (mutual TLS), so it
carries both the server and the client purpose and the names this host is reached by. The
workers' client certificate is signed by a CA of its own, which only the coordinator's worker port
trusts (``[coordinator] worker_ca``): a worker's certificate opens no role's port. Development
only: the CAs' keys sit next to what they signed, and anyone holding one can mint certificates
that are trusted (docs/security.md).

The trine.commands entry point ``certs`` names this module; it registers the command alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trine_core import CommandRegistry, hookimpl

CA_DAYS = 3650
LEAF_DAYS = 825
"""Leaf lifetimes at most 825 days: what Apple's and browsers' TLS stacks still accept."""
LOOPBACK = ("localhost", "127.0.0.1", "::1")
FILES = (
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "workers-ca.pem",
    "workers-ca-key.pem",
    "client.pem",
    "client-key.pem",
)


@dataclasses.dataclass(frozen=True)
class DevCerts:
    """Where ``write_dev_certs`` put each file."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def workers_ca(self) -> Path:
        return self.directory / "workers-ca.pem"

    @property
    def workers_ca_key(self) -> Path:
        return self.directory / "workers-ca-key.pem"

    @property
    def client(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"


def host_names() -> list[str]:
    """The names a server certificate of this host should carry: loopback, and the host's
    own name (short and fully qualified) so that other machines on the network can verify it."""
    names = list(LOOPBACK)
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


def write_dev_certs(
    directory: Path, hosts: Iterable[str] = (), *, force: bool = False, days: int = LEAF_DAYS
) -> DevCerts:
    """Write the CAs, the server and the client certificate and keys into ``directory``
    (created if missing); keys are 0600. ``hosts``: more names or addresses for the server
    certificate. Existing files are a FileExistsError naming them, unless ``force``."""
    directory.mkdir(parents=True, exist_ok=True)
    taken = [directory / f for f in FILES if (directory / f).exists()]
    if taken and not force:
        raise FileExistsError(
            f"{', '.join(map(str, taken))} already exist{'s' if len(taken) == 1 else ''}"
        )
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # clock skew
    ca_key, ca = _ca("trine development CA", now)
    workers_ca_key, workers_ca = _ca("trine development workers CA", now)
    names = list(dict.fromkeys([*host_names(), *hosts]))
    purposes = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server_key, server = _leaf(ca, ca_key, "trine", names, purposes, now, days)
    client_key, client = _leaf(
        workers_ca, workers_ca_key, "trine-worker", [], [ExtendedKeyUsageOID.CLIENT_AUTH], now, days
    )
    for name, cert, key in (
        ("ca", ca, ca_key),
        ("server", server, server_key),
        ("workers-ca", workers_ca, workers_ca_key),
        ("client", client, client_key),
    ):
        _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(directory / f"{name}-key.pem", pem, 0o600)
    return DevCerts(directory.resolve())  # absolute: the paths printed work from anywhere


def _ca(
    common_name: str, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer_public: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    # Key identifiers: OpenSSL's strict verification (Python 3.13's default) wants both.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: Sequence[str],
    purposes: list[x509.ObjectIdentifier],
    now: datetime.datetime,
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca.subject, key.public_key(), ca_key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write with ``mode`` from the first byte (a key is never readable by others, even
    briefly), replacing a file that is there (--force)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def usage(certs: DevCerts) -> str:
    """What to give each process, as flags and as environment variables."""
    return "\n".join(
        [
            f"wrote a development CA and certificates to {certs.directory}/ (keys 0600; do not "
            "use them in production)",
            "",
            "every role (engine, coordinator, gateway), as flags:",
            f"  --tls-cert {certs.server} --tls-key {certs.server_key} --tls-ca {certs.ca}",
            f"  --coordinator-worker-ca {certs.workers_ca}",
            "or in the environment:",
            f"  TRINE_TLS_CERT={certs.server} TRINE_TLS_KEY={certs.server_key} "
            f"TRINE_TLS_CA={certs.ca}",
            f"  TRINE_COORDINATOR_WORKER_CA={certs.workers_ca}",
            "workers (TLS to the coordinator, with a client certificate):",
            f"  TRINE_TLS_CA={certs.ca} TRINE_TLS_CERT={certs.client} "
            f"TRINE_TLS_KEY={certs.client_key}",
            "trine.Client and the trine CLI (an https:// gateway):",
            f"  TRINE_TLS_CA={certs.ca}",
        ]
    )


def main(prog: str, argv: Sequence[str]) -> int:
    """``trine certs dev DIR [--host NAME]... [--force]``."""
    parser = argparse.ArgumentParser(prog=prog, description="TLS certificates for trine")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    dev = sub.add_parser(
        "dev",
        help="write a development CA, a server and a client certificate into DIR",
        description="Write a development CA (ca.pem, ca-key.pem), a server certificate for "
        "this host's names that every role serves and dials with (server.pem, server-key.pem), "
        "and a CA for workers (workers-ca.pem, workers-ca-key.pem) with a client certificate it "
        "signed (client.pem, client-key.pem).",
    )
    dev.add_argument("dir", type=Path, metavar="DIR")
    dev.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name or IP address the server certificate is valid for (repeatable); "
        f"always: {', '.join(LOOPBACK)} and this host's name",
    )
    dev.add_argument("--force", action="store_true", help="replace existing files")
    dev.add_argument(
        "--days", type=int, default=LEAF_DAYS, help=f"certificates' lifetime (default {LEAF_DAYS})"
    )
    args = parser.parse_args(argv)
    try:
        certs = write_dev_certs(args.dir, args.host, force=args.force, days=args.days)
    except FileExistsError as exc:
        print(f"{prog}: error: {exc} (--force replaces them)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(usage(certs))
    return 0


@hookimpl
def trine_register_commands(registry: CommandRegistry) -> None:
    registry.add_command("certs", main)
