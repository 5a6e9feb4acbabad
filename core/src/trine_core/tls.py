"""TLS from the ``[tls]`` settings: the ``ssl.SSLContext`` every listener serves with and every
gRPC client dials with, so that one set of files secures a whole deployment (docs/security.md).

- ``[tls] cert`` + ``key``: every listener serves TLS (HTTPS on the gateway, TLS on gRPC ports),
  and gRPC clients present them as their client certificate.
- ``[tls] ca``: gRPC listeners require client certificates it signed (mutual TLS), and clients
  verify servers against it. Without it a client verifies against the system's trust store.

A file that is missing, unreadable, not PEM, or a key that does not match its certificate is a
one-line :class:`ConfigError` naming the setting and the file, at boot: a TLS handshake failing
later would only say "certificate verify failed" to whoever connects.

Every context negotiates ALPN ``h2`` (gRPC is HTTP/2; grpclib's own default client context does
the same; a ``tcp://`` worker port offers its own wire's, ``trine_proto.frames.ALPN``, instead) and
refuses anything older than TLS 1.2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
from pathlib import Path

from trine_core.errors import ConfigError
from trine_core.settings import INSECURE, TLS_CA, TLS_CERT, TLS_KEY, Settings

H2 = "h2"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """The ``[tls]`` files as configured (None: not set)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles:
        """The files; a ConfigError when only one of cert and key is set (a certificate is
        useless without its key and the other way round)."""
        cert, key, ca = (settings[s].strip() or None for s in (TLS_CERT, TLS_KEY, TLS_CA))
        if bool(cert) != bool(key):
            given, missing = (TLS_CERT, TLS_KEY) if cert else (TLS_KEY, TLS_CERT)
            raise ConfigError(
                f"{given.key} is set but {missing.key} is not: give both ({TLS_CERT.flag} and "
                f"{TLS_KEY.flag}, or {TLS_CERT.env} and {TLS_KEY.env})"
            )
        return cls(
            Path(cert) if cert else None, Path(key) if key else None, Path(ca) if ca else None
        )

    @property
    def serves_tls(self) -> bool:
        """Listeners serve TLS: a certificate and its key are configured."""
        return self.cert is not None and self.key is not None

    @property
    def mutual(self) -> bool:
        """gRPC listeners require client certificates: TLS served and a CA to check them."""
        return self.serves_tls and self.ca is not None

    @property
    def dials_tls(self) -> bool:
        """gRPC clients use TLS: anything configured means the peers serve TLS too."""
        return self.cert is not None or self.ca is not None


def server_context(
    settings: Settings,
    client_certs: ssl.VerifyMode | None = None,
    ca: Path | None = None,
    ca_setting: str = TLS_CA.key,
) -> ssl.SSLContext | None:
    """The context a gRPC listener serves with; None when ``[tls] cert`` is not set (plain).

    ``client_certs``: whether a client must present a certificate signed by ``ca`` (default
    ``[tls] ca``). By default ``CERT_REQUIRED`` when there is a CA (mutual TLS between roles).
    The coordinator's worker port asks for ``CERT_OPTIONAL`` (a certificate a worker presents
    is verified, none is needed; no CA: nothing to verify) or ``CERT_REQUIRED``, and checks
    workers against a CA of their own so that a worker's certificate opens no role's port.
    ``ca_setting`` names where ``ca`` came from, in errors.
    """
    files = TlsFiles.from_settings(settings)
    ca = ca or files.ca
    mode = client_certs
    if mode is None:
        mode = ssl.CERT_REQUIRED if ca is not None else ssl.CERT_NONE
    elif mode == ssl.CERT_OPTIONAL and ca is None:
        mode = ssl.CERT_NONE
    if mode == ssl.CERT_REQUIRED and ca is None:
        raise ConfigError(
            f"client certificates are required, but {ca_setting} (the CA to check them) is not set"
        )
    if files.cert is None or files.key is None:
        if mode != ssl.CERT_NONE:
            raise ConfigError(
                f"{ca_setting} is set but {TLS_CERT.key} and {TLS_KEY.key} are not: a listener "
                "that checks client certificates must serve TLS itself"
            )
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    _load_chain(context, files.cert, files.key)
    if mode != ssl.CERT_NONE and ca is not None:
        _load_ca(context, ca, ca_setting)
    context.verify_mode = mode
    return context


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """The context gRPC clients dial with; None when no ``[tls]`` file is set (plain).

    Servers are verified against ``[tls] ca`` (else the system's trust store), host name
    included; ``[tls] cert``/``key``, when set, are presented as the client certificate.
    """
    files = TlsFiles.from_settings(settings)
    if not files.dials_tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    _harden(context)
    if files.ca is not None:
        _load_ca(context, files.ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if files.cert is not None and files.key is not None:
        _load_chain(context, files.cert, files.key)
    return context


def check_server_files(settings: Settings) -> TlsFiles:
    """Check the ``[tls]`` files as a listener would load them (a one-line ConfigError if they
    cannot be), for a server that loads them itself (uvicorn takes file names)."""
    server_context(settings, client_certs=ssl.CERT_NONE)
    return TlsFiles.from_settings(settings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address's host) is reachable from this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def refuse_open_listener(settings: Settings, host: str, address: str, what: str) -> None:
    """The boot check for a gRPC port that gives its callers full control (the engine's, the
    coordinator's registry): on a non-loopback ``host`` it needs mutual TLS, or ``--insecure``.
    One line, naming what would have listened where and the two ways out."""
    if is_loopback(host) or settings[INSECURE] or TlsFiles.from_settings(settings).mutual:
        return
    raise ConfigError(
        f"{what}: refusing to listen on {address} (not loopback) without mutual TLS: set "
        f"{TLS_CERT.flag}, {TLS_KEY.flag} and {TLS_CA.flag} (trine certs dev DIR writes a "
        f"development set), or pass {INSECURE.flag}"
    )


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([H2])


def _read(path: Path, setting: str) -> str:
    """The file's text; a ConfigError naming the setting and the file otherwise."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{setting} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{setting} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"{setting} {path} cannot be read: {exc.strerror or exc}") from None


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    if "-----BEGIN CERTIFICATE-----" not in _read(cert, TLS_CERT.key):
        raise ConfigError(f"{TLS_CERT.key} {cert} holds no PEM certificate")
    key_text = _read(key, TLS_KEY.key)
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(f"{TLS_KEY.key} {key} holds no PEM private key")
    if "ENCRYPTED" in key_text:
        raise ConfigError(f"{TLS_KEY.key} {key} is encrypted: give an unencrypted key (mode 0600)")

    def no_password() -> str:  # an encrypted key must not prompt on the terminal
        raise ConfigError(f"{TLS_KEY.key} {key} needs a password")

    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{TLS_KEY.key} {key} does not match {TLS_CERT.key} {cert} (the key of another "
                "certificate?)"
            ) from None
        raise ConfigError(
            f"{TLS_CERT.key} {cert} / {TLS_KEY.key} {key} cannot be loaded: {exc.reason or exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path, setting: str = TLS_CA.key) -> None:
    if "-----BEGIN CERTIFICATE-----" not in _read(ca, setting):
        raise ConfigError(f"{setting} {ca} holds no PEM certificate")
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"{setting} {ca} cannot be loaded: {exc.reason or exc}") from None
