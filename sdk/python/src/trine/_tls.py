"""TLS for the SDK from the environment, the same files the runtime's ``[tls]`` names:

- ``TRINE_TLS_CA``: the CA a worker verifies the coordinator with (it switches the worker to
  TLS), and ``trine.Client`` an ``https://`` gateway.
- ``TRINE_TLS_CERT`` / ``TRINE_TLS_KEY``: the worker's client certificate (a coordinator may
  require one: ``[coordinator] require_worker_certs``).

A missing or unreadable file, or a key that does not fit its certificate, is a ``ValueError``
naming the variable and the file when the worker starts, not a handshake failing on every retry.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

CA, CERT, KEY = "TRINE_TLS_CA", "TRINE_TLS_CERT", "TRINE_TLS_KEY"


def worker_context(env: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The context a worker dials the coordinator with; None (plain) when no variable is set.
    Without ``TRINE_TLS_CA`` the coordinator is verified against the system's trust store."""
    env = os.environ if env is None else env
    ca, cert, key = (env.get(name, "").strip() for name in (CA, CERT, KEY))
    if not (ca or cert or key):
        return None
    if bool(cert) != bool(key):
        given, missing = (CERT, KEY) if cert else (KEY, CERT)
        raise ValueError(f"{given} is set but {missing} is not: a client certificate needs both")
    context = _verifying(ca)
    context.set_alpn_protocols(["h2"])  # gRPC is HTTP/2
    if cert:
        _check_readable(CERT, cert)
        _check_readable(KEY, key)
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(
                f"{CERT}={cert} / {KEY}={key} cannot be used as a client certificate: "
                f"{exc.reason or exc} (a key of another certificate, or not PEM?)"
            ) from None
    return context


def client_verify(env: Mapping[str, str] | None = None) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for ``trine.Client``: the CA of ``TRINE_TLS_CA``, else the defaults."""
    env = os.environ if env is None else env
    ca = env.get(CA, "").strip()
    return _verifying(ca) if ca else True


def _verifying(ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not ca:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return context
    _check_readable(CA, ca)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise ValueError(f"{CA}={ca} holds no usable PEM certificate: {reason}") from None
    return context


def _check_readable(variable: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ValueError(f"{variable}={path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{variable}={path} cannot be read: {exc.strerror or exc}") from None


def _no_password() -> str:
    raise ValueError(f"{KEY} names an encrypted key: give an unencrypted one (mode 0600)")
